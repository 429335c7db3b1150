"""The Operations tab's renderers (assistant/ui_render.py): lifecycle table, summary, P(lapse) histogram."""

from __future__ import annotations

import pandas as pd

from assistant.ui_render import at_risk_table, lapse_histogram, operations_summary

RESULT = {"horizon_days": 7, "as_of": "2026-06-30T23:02:12", "currency": "USD", "money_at_risk": 1234.5,
          "stage_counts": {"new": 3, "active": 40, "lapsing": 12, "at_risk": 9, "lost": 312},
          "lost_note": "312 customers were already lost before this week (3 usual gaps without an order); "
                       "they are not in this list",
          "population": "64 customers not lost (new, active, lapsing or at risk); 21 of them can lapse within this week",
          "value_model": "BG/NBD + Gamma-Gamma, predicted over the next 90 days",
          "users": [{"rank": 1, "user_id": "42", "stage": "at_risk", "p_lapse": 0.7, "p_churn": 0.7,
                     "value_at_risk": 86.5, "expected_value": 123.57, "reasons": ["overdue: 20 days", "an order now"]}]}


def test_table_leads_with_stage_and_money_and_joins_reasons():
    table = at_risk_table(RESULT)
    assert list(table.columns[:6]) == ["rank", "user_id", "stage", "p_lapse", "value_at_risk", "expected_value"]
    assert table.loc[0, "stage"] == "at risk" and table.loc[0, "reasons"] == "overdue: 20 days; an order now"
    assert "p_churn" in table.columns  # still shown, after the lifecycle columns
    assert at_risk_table({"users": []}).empty


def test_summary_says_stages_money_with_currency_and_the_lost():
    text = operations_summary(RESULT)
    assert "at risk 9" in text and "lost 312" in text
    assert "1,234.50 USD" in text and "312 customers were already lost" in text
    orders = operations_summary({**RESULT, "currency": None, "value_unit": "orders",
                                 "value_note": "no prices in the data: value is in expected orders, not money"})
    assert "1,234.50 orders" in orders and "no prices in the data" in orders


def test_histogram_counts_customers_per_bin():
    hist = lapse_histogram(pd.Series([0.0, 0.05, 0.5, 0.95, 1.0, None]))
    assert len(hist) == 10 and hist["customers"].sum() == 5
    assert hist.set_index("p_lapse")["customers"].to_dict()["0.9–1.0"] == 2


def test_the_headline_answer_shows_stage_money_and_the_already_lost():
    from assistant.agent.composer import compose_answer

    text = compose_answer("Which users will churn this week and why?", [
        ("at_risk_users", {**RESULT, "rank_by": "value_at_risk"}),
        ("explain_user", {"user_id": "42", "p_churn": 0.7, "horizon_days": 7,
                          "lifecycle": {"stage": "at_risk", "p_lapse": 0.7, "value_at_risk": 86.5, "currency": "USD",
                                        "reasons": ["overdue", "an order now brings them back"]}})])
    assert text.startswith("The customers with the most money at stake over the next 7 days are user 42.")
    assert "- user 42 (at risk): 70% lapse risk, 86.50 USD at risk; overdue: 20 days; an order now" in text
    assert "Money at risk across 64 customers not lost" in text and "1,234.50 USD" in text
    assert "312 customers were already lost before this week" in text
    assert "Stage: at risk (70% chance of lapsing, 86.50 USD at risk); overdue; an order now brings" in text


def test_a_shop_without_prices_is_answered_in_expected_orders_not_money():
    from assistant.agent.composer import compose_answer

    no_prices = {**RESULT, "rank_by": "value_at_risk", "currency": None, "value_unit": "orders",
                 "value_note": "no prices in the data: value is in expected orders, not money"}
    text = compose_answer("Which users will churn this week and why?", [("at_risk_users", no_prices)])
    assert text.startswith("The customers with the most expected orders at stake over the next 7 days")
    assert "Expected orders at risk across 64 customers not lost" in text and ": 1,234.50 expected orders, as of" in text
    assert "money" not in text.split("Note:")[0].lower() and "USD" not in text and "$" not in text
