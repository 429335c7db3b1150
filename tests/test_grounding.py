"""The grounding check: numbers and ids in an answer must come from tool results."""

from __future__ import annotations

import re

import pytest

from assistant.agent import grounding
from assistant.agent.grounding import Evidence, check, citations, extract_claims, redact

RESULT = {
    "users": [
        {"user_id": "u_00042", "p_churn": 0.7341, "expected_spend": 1234.5, "value_at_risk": 906.27},
        {"user_id": "00017", "p_churn": 0.61, "expected_spend": 88.0, "value_at_risk": 53.68},
    ],
    "horizon_days": 7,
    "cutoff": "2024-03-01T00:00:00",
    "reviews": [{"review_id": "R-9", "quote": "arrived after 12 days"}],
}


@pytest.fixture()
def evidence() -> Evidence:
    return Evidence.from_results([RESULT], extra_texts=["Who are the top 5 at risk?"])


@pytest.mark.parametrize("text", [
    "User u_00042 has a 0.73 churn probability.",
    "User u_00042 will churn with 73.4% probability.",
    "u_00042: 73 % likely to churn",
    "u_00042 churns with 73.41 percent probability",
    "Value at risk for u_00042 is $906.27 of $1,234.50 expected spend.",
    "Expected spend of u_00042 is about 1,235.",
    "User 00017 is second (61%).",
    "Over the next 7 days (7-day horizon), as of 2024-03-01.",
    "Two users are listed: 2 in total.",
    "A customer wrote it arrived after 12 days (review R-9).",
    "The top 5 you asked for:",
    "1. u_00042\n2. 00017",
])
def test_formatting_variants_are_grounded(evidence: Evidence, text: str) -> None:
    report = check(text, evidence)
    assert report.ok, report.claims


@pytest.mark.parametrize("text, bad", [
    ("User u_00043 has a 0.73 churn probability.", "u_00043"),
    ("User u_00042 will churn with 75% probability.", "75%"),
    ("User u_00042 has a 0.74 churn probability.", "0.74"),  # 0.7341 rounds to 0.73
    ("3 users are at risk.", "3"),  # small counts must match exactly
    ("As of 2024-03-02.", "2024-03-02"),
    ("Value at risk is $907.", "$907"),
    ("Over the next 30 days.", "30"),
])
def test_invented_claims_are_caught(evidence: Evidence, text: str, bad: str) -> None:
    report = check(text, evidence)
    assert report.ungrounded == [bad]


def test_question_numbers_only_when_given() -> None:
    strict = Evidence.from_results([RESULT])
    assert check("The top 5 you asked for.", strict).ungrounded == ["5"]


def test_ids_are_compared_as_strings() -> None:
    ev = Evidence.from_results([{"user_id": 42, "item_id": "B001E4KFG0"}])
    assert check("user 42 bought B001E4KFG0", ev).ok
    assert check("user 42 bought B001E4KFG1", ev).ungrounded == ["B001E4KFG1"]


def test_list_markers_and_ordinals_are_not_claims() -> None:
    claims = extract_claims("1. first\n2) second\nThe 3rd one")
    assert claims == []


def test_redact_drops_only_ungrounded_sentences(evidence: Evidence) -> None:
    text = "User u_00042 is at 73.4% risk. User u_00099 is at 99% risk. Ask me more."
    report = check(text, evidence)
    assert report.ungrounded == ["u_00099", "99%"]
    kept = redact(text, report)
    assert kept == "User u_00042 is at 73.4% risk.\nAsk me more."
    assert check(kept, evidence).ok


def test_redact_list_lines() -> None:
    ev = Evidence.from_results([RESULT])
    text = "At risk:\n- u_00042 (0.734)\n- u_777 (0.9)"
    kept = redact(text, check(text, ev))
    assert kept == "At risk:\n- u_00042 (0.734)"


def test_citations_follow_mentions() -> None:
    text = "u_00042 first, then 00017; see review R-9."
    cites = citations(text, [("at_risk_users", RESULT)])
    assert [(c["kind"], c["id"]) for c in cites] == [("user", "u_00042"), ("user", "00017"), ("review", "R-9")]
    assert citations("nothing here", [("at_risk_users", RESULT)]) == []


def test_sentence_split_keeps_decimals() -> None:
    assert grounding.split_sentences("p is 0.73. Next one.") == ["p is 0.73.", "Next one."]


# ---------------------------------------------------------------------------- the composer is grounded by construction
CATALOG_SHAPED = [
    ("at_risk_users", {"horizon_days": 7, "as_of": "2026-06-30T23:02:12", "rank_by": "value_at_risk", "segment": None,
                       "population": "2134 active customers (a purchase in the last 90 days)", "mean_p_churn": 0.4123,
                       "users": [{"rank": 1, "user_id": "1814", "p_churn": 0.91234, "value_at_risk": 12.456,
                                  "expected_spend": 13.7, "days_since_last_buy": 41, "orders": 3}]}),
    ("explain_user", {"user_id": "1814", "horizon_days": 7, "p_churn": 0.9123,
                      "drivers": [{"type": "feature", "feature": "recency", "effect": 0.2113,
                                   "direction": "raises churn risk"},
                                  {"type": "event", "event": {"behavior": "buy", "item_id": "P00001",
                                                              "category_id": "tea"}, "effect": -0.0312}],
                      "facts": {"orders": 3, "spend": 45.2, "top_category": "tea"}}),
    ("review_summary", {"scope": {"item_id": "P00458", "since": None}, "n_reviews": 29, "mean_rating": 3.21,
                        "sentiment": {"positive": 12, "mixed": 5, "negative": 12},
                        "aspects": [{"aspect": "taste", "reviews": 9, "positive": 6, "negative": 3,
                                     "quote": {"review_id": "R0000042", "text": "«tastes stale after 2 weeks»"}}],
                        "quotes": {"negative": [{"review_id": "R0000007", "p_positive": 0.07, "text": "«awful»",
                                                 "rating": 1}], "positive": []}}),
    ("segment_report", {"segment_by": "tenure", "horizon_days": 30, "segments": [
        {"segment": "0-30d", "users": 211, "predicted_churn_rate": 0.6412, "predicted_buy_rate": 0.3588,
         "mean_spend": 10.004}]}),
    ("similar_cases", {"cases": [{"case_id": "snap:1814:2026-04-01", "similarity": 0.9312, "user_id": "77",
                                  "churned": True, "buys_after": 0}],
                       "outcomes": {"n_snapshots": 5, "churned": 3, "retained": 2, "churn_rate": 0.6}}),
    ("similar_cases", {"cases": [{"case_id": "snap:77:2026-04-01", "similarity": 0.9312, "user_id": "77",
                                  "churned": False, "buys_after": 2, "days_to_return": 9, "horizon_days": 30}],
                       "outcomes": {"n_snapshots": 5, "churned": 3, "retained": 2, "churn_rate": 0.6,
                                    "came_back": 2, "came_back_share": 0.4, "median_days_to_return": 12.5}}),
    # "items" as a view key once printed Jinja's dict.items method instead of the list: keep this case.
    ("predict_next", {"user_id": "1814", "as_of": "2026-06-30T23:03:41", "next_behavior": "view",
                      "next_categories": [{"category_id": "nuts_dried_fruit", "p": 0.434}],
                      "next_items": [{"item_id": "P00458", "p": 0.05}], "p_buy": {"7d": 0.953, "30d": 0.982},
                      "model_version": "demo-8b8671d4d4ac"}),
    ("user_history", {"user_id": "1814", "events": [{"ts": "2026-06-01T10:00:00", "behavior": "buy",
                                                     "item_id": "P00001", "amount": 4.5}],
                      "totals": {"orders": 3, "spend": 45.2}}),
]


@pytest.mark.parametrize("tool, result", CATALOG_SHAPED, ids=[t for t, _ in CATALOG_SHAPED])
def test_composed_answers_are_grounded(tool: str, result: dict) -> None:
    from assistant.agent.composer import compose_answer

    text = compose_answer("q", [(tool, result)])
    assert text and "None" not in text
    report = check(text, Evidence.from_results([result]))
    assert report.ok, (text, report.ungrounded)
    # A similar case is cited by its customer (and date), not by the snapshot's storage key.
    ids = ["user 77"] if tool == "similar_cases" else \
        [v for v in ("1814", "P00458", "R0000042", "0-30d") if v in str(result)]
    assert all(i in text for i in ids)
    assert check(text, Evidence.from_results([result], tools=[tool], question="q")).ok  # statements true too
    zh = compose_answer("q", [(tool, result)], language="zh")
    assert check(zh, Evidence.from_results([result], tools=[tool], question="q")).ok, zh
    for prose in (text, zh):  # no internal field names, no raw timestamps
        assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}|\bp_churn\b|\bmodel_version\b|\bp buy\b", prose)


# ---------------------------------------------------------------------------- statements, not only numbers
EXPLAINED = {"user_id": "1814", "p_churn": 0.61, "drivers": [
    {"type": "feature", "feature": "recency", "effect": 0.19, "p_churn_without": 0.42},
    {"type": "feature", "feature": "frequency", "effect": -0.05, "p_churn_without": 0.66}]}
AT_RISK = {"users": [{"user_id": "1814", "p_churn": 0.8, "reasons": ["overdue: 40 days since the last order"]},
                     {"user_id": "2", "p_churn": 0.7, "reasons": ["overdue: 20 days since the last order",
                                                                  "no visits or carts in the last 30 days"]}]}


@pytest.mark.parametrize("tool, result, text", [
    ("explain_user", EXPLAINED, "The main reason is how often they have bought."),  # not the top driver
    ("explain_user", EXPLAINED, "Their purchase frequency raises the churn risk."),  # the effect is negative
    ("explain_user", EXPLAINED, "Recency lowers the risk."),  # the effect is positive
    ("at_risk_users", AT_RISK, "User 2 is the most at risk."),  # 1814 is first
    ("at_risk_users", AT_RISK, "The most common reason for churn is the user's first purchase."),
    ("at_risk_users", AT_RISK, "The biggest risk is the user's recent spend (\"value_band\")."),
    ("predict_next", {"user_id": "1814", "next_categories": [{"category_id": "tea", "p": 0.4}]},
     "The most common reason for churn is the user's recent visits."),  # off topic after a next-purchase answer
    ("segment_report", {"segment_by": "first_category", "segments": [{"segment": "tea"}]},
     "Churn is driven by first_category."),  # an internal field name
])
def test_false_or_off_topic_statements_are_ungrounded(tool: str, result: dict, text: str) -> None:
    report = check(text, Evidence.from_results([result], tools=[tool], question="q"))
    assert not report.ok and any(c.kind == "statement" for c in report.claims), report.claims
    assert redact(text, report) == ""


@pytest.mark.parametrize("tool, result, text", [
    ("explain_user", EXPLAINED, "The main reason is the time since the last purchase, which raises the risk."),
    ("explain_user", EXPLAINED, "How often they have bought lowers the risk a little."),
    ("at_risk_users", AT_RISK, "User 1814 is the most at risk; the most common reason is being overdue."),
    ("predict_next", {"user_id": "1814", "next_categories": [{"category_id": "tea", "p": 0.4}]},
     "User 1814 will most likely buy tea next."),
])
def test_true_statements_pass(tool: str, result: dict, text: str) -> None:
    assert check(text, Evidence.from_results([result], tools=[tool], question="q")).ok


def test_churn_asked_about_is_on_topic_whatever_the_tool() -> None:
    text = "Few of these buyers are at risk of churn."
    result = {"next_categories": [{"category_id": "tea"}]}
    assert check(text, Evidence.from_results([result], tools=["predict_next"], question="Will they churn?")).ok
    assert not check(text, Evidence.from_results([result], tools=["predict_next"], question="What next?")).ok


def test_word_dates_are_claims_checked_against_the_results() -> None:
    evidence = Evidence.from_results([{"as_of": "2026-06-30T23:03:41"}])
    assert check("As of June 30, 2026.", evidence).ok and check("截至 2026年6月30日。", evidence).ok
    assert check("As of June 29, 2026.", evidence).ungrounded == ["June 29, 2026"]


def test_case_ids_are_cited_and_grounded() -> None:
    # Snapshot case ids join a user id and a cutoff with "@"; splitting there lost the citation.
    cases = {"cases": [{"case_id": "211@20260501T213739Z", "user_id": "211", "churned_30d": True}]}
    text = "Case 211@20260501T213739Z churned."
    assert {(c["kind"], c["id"]) for c in citations(text, [("similar_cases", cases)])} >= {("case", "211@20260501T213739Z")}
    assert check(text, Evidence.from_results([cases])).ok
    assert not check("Case 212@20260501T213739Z churned.", Evidence.from_results([cases])).ok


def test_parts_of_a_key_name_are_grounded() -> None:
    # The composer writes the key "events_30d" as "events 30d"; "30d" comes from the result itself.
    evidence = Evidence.from_results([{"facts": {"events_30d": 180}}])
    assert check("Facts: events 30d 180.", evidence).ok
    assert not check("Facts: events 60d 180.", evidence).ok


def test_similar_cases_say_after_how_long_those_who_came_back_returned() -> None:
    from assistant.agent.composer import compose_answer

    came_back = [r for t, r in CATALOG_SHAPED if t == "similar_cases" and "came_back" in r["outcomes"]][0]
    en = compose_answer("q", [("similar_cases", came_back)])
    assert "after 12.5 days (median)" in en and "back after 9 days" in en, en
    assert "天后再次购买" in compose_answer("q", [("similar_cases", came_back)], language="zh")
    no_days = [r for t, r in CATALOG_SHAPED if t == "similar_cases" and "came_back" not in r["outcomes"]][0]
    assert "median" not in compose_answer("q", [("similar_cases", no_days)])  # old memories: say nothing
