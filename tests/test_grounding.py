"""The grounding check: numbers and ids in an answer must come from tool results."""

from __future__ import annotations

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
    ids = [v for v in ("1814", "P00458", "R0000042", "0-30d", "snap:1814:2026-04-01") if v in str(result)]
    assert all(i in text for i in ids)


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
