"""Counts, look-alikes, split comparatives, tenure quantities and joined ids in staff's words (Round 9b), one test
per class: the questions are the classes' shapes in several languages, none from an evaluation set.

Real parts: tool functions with the read-only checks the catalog attaches (`known_values`), their real schemas
(build_specs), the real cue lists, count reading, grounding and server router (against a scripted server model
that has the two methods a server chat model has; the router's own code runs unchanged).
"""

from __future__ import annotations

from typing import Optional

from langchain_core.messages import HumanMessage

from assistant.agent.counts import fill_stated_count, stated_counts
from assistant.agent.cues import about_lookalikes, compares, compares_groups, prefer_cued_tools
from assistant.agent.mentions import mentions
from assistant.agent.server_router import ServerRouter
from assistant.agent.time_spans import spans, tenure_spans
from assistant.agent.tool_specs import build_specs, check_known, ground_arguments
from test_router_cue_classes import shop_tools as cue_shop_tools
from tools.catalog import known_values

USERS = {"1334", "4955", "161"}


def shop_tools() -> list:
    def similar_cases(user_id: Optional[str] = None, text: Optional[str] = None, k: int = 5) -> dict:
        """Past customers similar to a user or a description, and what became of them.

        Args:
            user_id: find customers like this one.
            text: a description of the situation.
            k: how many cases.
        """
        return {}

    def user_history(user_id: str, last_n: int = 10) -> dict:
        """A customer's recent events.

        Args:
            user_id: the user's id.
            last_n: how many events, newest first.
        """
        return {}

    return [*cue_shop_tools(), known_values(similar_cases, user_id=lambda v: v in USERS),
            known_values(user_history, user_id=lambda v: v in USERS)]


RANKED = ["at_risk_users", "explain_user", "open_carts", "segment_report", "user_history", "similar_cases"]


def test_a_stated_count_fills_the_count_argument_left_out() -> None:
    specs = build_specs(shop_tools())
    cases = {"top five churn risks this week": ("at_risk_users", {"horizon_days": 7}, 5),
             "los 5 primeros clientes con más riesgo este mes": ("at_risk_users", {"horizon_days": 30}, 5),
             "列出本周最有可能流失的前5位客户": ("at_risk_users", {}, 5),
             "前三名流失风险最高的客户": ("at_risk_users", {}, 3),
             "die 3 größten offenen Warenkörbe der letzten 14 Tage": ("open_carts", {"window_days": 14}, 3),
             "gli ultimi 6 eventi del cliente 161": ("user_history", {"user_id": "161"}, 6),
             "show 10 lookalike past cases for 4955": ("similar_cases", {"user_id": "4955"}, 10)}
    for question, (tool, args, count) in cases.items():
        key = {"at_risk_users": "top_k", "open_carts": "top_k", "user_history": "last_n", "similar_cases": "k"}[tool]
        assert fill_stated_count(specs[tool], args, question) == ({**args, key: count}, [key]), question
    # a count the model wrote stands; no count, two counts, or a count over the schema's limit: nothing filled
    assert fill_stated_count(specs["at_risk_users"], {"top_k": 4}, "top 5 risks") == ({"top_k": 4}, [])
    for question in ("who is at risk this week?", "top 3 or top 5 risks?", "the top one at risk"):
        assert fill_stated_count(specs["at_risk_users"], {}, question) == ({}, []), question
    # a tool with no count argument gets none
    assert fill_stated_count(specs["explain_user"], {"user_id": "4955"}, "top 3 reasons 4955 may leave")[1] == []


def test_spans_tenures_ids_bands_shares_and_filter_quantities_are_no_count() -> None:
    for question in ("Kunden, die schon länger als 90 Tage dabei sind", "customers with more than 5 orders",
                     "clientes con más de 2 años con nosotros", "segment 0-30d vs 365d+", "churn above 20% this month",
                     "what did #2 leave in their cart?", "usr_4211 last events", "user 42 history", "review P01000",
                     "carts of the last 14 days", "未来30天的流失风险", "reviews since 2 weeks ago"):
        assert stated_counts(question) == [], question
    assert stated_counts("Les 4 catégories que le client 2363 achètera") == [4]


def test_a_tenure_quantity_grounds_no_horizon() -> None:
    """"Accounts older than 6 months: ..." ran with horizon_days=6 (Round 9, hd08)."""
    specs = build_specs(shop_tools())
    for question in ("Accounts older than 6 months: is their churn lower than the newer accounts'?",
                     "¿Los clientes con más de 6 meses con nosotros abandonan menos?",
                     "Kunden, die länger als 6 Monate dabei sind: wie hoch ist die Abwanderung?"):
        asked = [question]
        assert ground_arguments(specs["segment_report"], {"segment_by": "tenure", "horizon_days": 6}, asked,
                                asked)[0] == {"segment_by": "tenure"}, question
        assert spans(question) == [] and tenure_spans(question), question
    # spans in German, Portuguese and Italian are horizons and windows
    assert spans("Welche Warenkörbe der letzten 14 Tage, diesen Monat?") == [("14 Tage", 14), ("diesen Monat", 30)]
    assert spans("quem sai neste mês?") == [("neste mês", 30)] and spans("questa settimana") == [
        ("questa settimana", 7)]
    asked = ["top 5 risks for the next 2 weeks"]
    assert ground_arguments(specs["at_risk_users"], {"horizon_days": 14, "top_k": 5}, asked, asked)[0] == {
        "horizon_days": 14, "top_k": 5}


def test_comparatives_split_by_an_adjective_are_comparisons() -> None:
    """"... un risque de churn plus faible ce mois-ci que les nouveaux ?" went to the at-risk list (hd09)."""
    specs = build_specs(shop_tools())
    for question in ("Les anciens clients ont-ils un taux de churn plus faible ce mois-ci que les nouveaux ?",
                     "¿Los clientes nuevos tienen una tasa más alta que los antiguos?",
                     "Os clientes novos têm uma taxa mais baixa do que os antigos?",
                     "I nuovi clienti abbandonano più spesso dei vecchi?"):
        assert compares(question), question
        assert compares_groups(specs, question, mentions(question)), question
        assert prefer_cued_tools(specs, RANKED, question, mentions(question))[0] == "segment_report", question
    assert not compares("los 5 primeros clientes con más riesgo de abandono este mes")


def test_lookalikes_in_other_languages_put_the_lookalike_tool_first() -> None:
    """"Clientes parecidos com o 1088 ..." went to explain_user (hd21)."""
    specs = build_specs(shop_tools())
    for question in ("Clientes parecidos com o 4955: eles voltaram a comprar?", "Kunden ähnlich wie 4955",
                     "des clients semblables au client 4955", "和客户4955类似的客户后来流失了吗？",
                     "clientes similares a 4955"):
        assert about_lookalikes(question), question
        assert prefer_cued_tools(specs, RANKED, question, mentions(question))[0] == "similar_cases", question
    assert not about_lookalikes("why is 4955 at risk?")


def test_an_id_joined_to_its_noun_by_an_underscore_is_the_id() -> None:
    """The model wrote "usr_1341" as user_id and the router passed user_history over (C hc23)."""
    spec = build_specs(shop_tools())["user_history"]
    assert check_known(spec, {"user_id": "usr_4955", "last_n": 12}) == ({"user_id": "4955", "last_n": 12}, [])
    assert check_known(spec, {"user_id": "cust_161"})[0] == {"user_id": "161"}
    assert check_known(spec, {"user_id": "usr_9999"})[0] == {"user_id": "usr_9999"}  # no id: the router passes over


class ScriptedServer:
    """A server chat model's two methods, scripted: names scored, arguments as the model left them."""

    def __init__(self, scores: dict[str, float], arguments: dict[str, dict]):
        self.scores, self.arguments = scores, arguments

    def score_tool_names(self, messages, schemas):
        return dict(self.scores), {}

    def constrained_arguments(self, messages, schemas, name):
        return dict(self.arguments.get(name, {}))


def test_the_server_router_reads_the_cues_and_fills_what_the_question_names() -> None:
    specs = build_specs(shop_tools())
    scores = {name: -float(i) for i, name in enumerate(RANKED)}  # the at-risk list first, as the 0.5B likes it
    server = ScriptedServer(scores, {"at_risk_users": {}, "segment_report": {"segment_by": "value_band"},
                                     "similar_cases": {"user_id": "4955"}})
    router = ServerRouter(server)
    question = "¿Los clientes nuevos abandonan más que los antiguos este mes?"
    assert router.route([HumanMessage(question)], specs) == {
        "name": "segment_report", "args": {"segment_by": "tenure", "horizon_days": 30}}
    assert router.route([HumanMessage("Kunden ähnlich wie 4955, die 3 nächsten")], specs) == {
        "name": "similar_cases", "args": {"user_id": "4955", "k": 3}}
    assert router.route([HumanMessage("列出本周最有可能流失的前5位客户")], specs) == {
        "name": "at_risk_users", "args": {"horizon_days": 7, "top_k": 5}}


def test_an_id_inside_chinese_text_is_named() -> None:
    """"和客户161类似的客户后来流失了吗？" named no id: the id pattern ran on into the Chinese characters (E he10)."""
    assert mentions("和客户161类似的客户后来流失了吗？")[0] == "161"
    assert mentions("用户3710为什么会流失")[0] == "3710"
    assert "2026" not in mentions("2026年5月的评论")  # a year, a unit after it: no id


def test_a_quantity_in_other_languages_is_no_comparison() -> None:
    """"Kunden, die schon länger als 90 Tage dabei sind: wer springt diese Woche ab?" went to the per-group
    report: "als" read as a comparison (E he14)."""
    specs = build_specs(shop_tools())
    for question in ("Kunden, die schon länger als 90 Tage dabei sind: wer springt diese Woche ab?",
                     "clientes con más de 2 años con nosotros en riesgo este mes",
                     "clients avec plus de 20% de risque cette semaine"):
        assert not compares(question), question
        assert prefer_cued_tools(specs, RANKED, question, mentions(question))[0] == "at_risk_users", question
    assert compares("Kaufen Neukunden mehr als Stammkunden?")  # no quantity after it: a comparison
