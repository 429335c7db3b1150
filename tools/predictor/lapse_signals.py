"""Signs of a bad experience that the lapse map can read beside the rhythm: from reviews, and from
the change of the customer's own activity.

A late or poor order makes a customer less likely to come back before their order rhythm shows it,
and the shop's lapse rate moves with spells of late deliveries (on the demo shop, its carrier
disruptions: docs/demo_shop.md). Two signals, both read from what a shop has (reviews, orders), as of
a cutoff, never after it:

- **bad experience lately** (`bad_lately`): the customer wrote, in the `LATELY_DAYS` up to the
  cutoff, a review of `BAD_RATING` stars or fewer, or a delivery complaint;
- **delivery-trouble exposure** (`delivery_exposure`): for each of the customer's order days in the
  `LATELY_DAYS` up to the cutoff, the share of the shop's reviews dated within `AROUND_DAYS` of that
  day that are delivery complaints, minus the shop's share over all its reviews, floored at 0,
  summed over those days: about how many more of their recent orders than usual met late
  deliveries. It needs no review from the customer: one who ordered during a spell of late
  deliveries carries it;
- **ordered during a delivery spell** (`delivery_spell`, 0/1): the customer ordered, in the
  `LATELY_DAYS` up to the cutoff, on a day whose complaint share (the same reviews within
  `AROUND_DAYS`) is significantly above the shop's share over all its reviews: a one-sided binomial
  test at `SPELL_TEST_LEVEL`. Bounded, so a map cannot extrapolate it to a larger spell than it was
  fitted on (the exposure's failure at a validation cutoff: bench/results/clv.md, Round 8).

A **delivery complaint** is a review of `COMPLAINT_MAX_RATING` stars or fewer whose title or text
names delivery (`DELIVERY_WORDS`: English words only; a shop reviewed in another language gets no
complaint, and both signals read 0 there, as they do without reviews).

**The change of the customer's own activity** (`activity_change`; events of any kind: views, carts,
orders). A late or poor order takes the customer's engagement down at once, and a customer whose
engagement fell browses less before the order rhythm shows anything (on the demo shop a late order
multiplies it by 0.3 and sessions follow it: tools/data/synth_process.py); a good order renews it. The
absolute counts the map already reads (`log_events_14d`, `log_events_30d`) cannot tell a light browser
on their usual pace from a heavy one who went quiet; these read each customer against themselves, and
ordinary late orders and poor items happen in every window, so the map can learn them before any
disruption. A real shop has the same sign (disengagement after an order). Two columns, fixed in Round
10 before any run (bench/results/clv.md):

- **D1, own-rate activity ratio** (`activity_vs_own_rate`): log((events in the `OWN_RATE_DAYS` up to
  the cutoff + 1) / (the customer's mean events per `OWN_RATE_DAYS` over their history before those
  days + 1)); that history's span is floored at `OWN_RATE_DAYS` (a few days of history cannot claim a
  fortnight's rate); 0 without any event before those days (no own rate to compare with);
- **D2, activity since the last order against before it** (`activity_since_order`):
  log((events per day after the last order's day, up to the cutoff + `ACTIVITY_EPS_PER_DAY`) /
  (events per day in the `BEFORE_ORDER_DAYS` before that day, within the customer's history, +
  `ACTIVITY_EPS_PER_DAY`)); the order's own day counts in neither (its browsing led to the order);
  0 without an order, or where either span is shorter than `MIN_ACTIVITY_SPAN_DAYS`.

On orders-only data (CDNOW: no visits) both read orders: D1 compares the recent orders with the
customer's own order rate, D2 is log(eps / (orders per day before the last order + eps)) <= 0, since
no order follows the last one; both finite, never NaN.

Usage:
    signals = lapse_signals(events, reviews, cutoff, users)   # columns bad_lately, delivery_exposure, delivery_spell
    change = activity_change(events, cutoff, users)           # columns activity_vs_own_rate, activity_since_order
"""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pandas as pd
from scipy.stats import binom

BAD_RATING = 2  # as in lifecycle.BAD_RATING: a review this low is a bad experience, whatever it says
COMPLAINT_MAX_RATING = 3  # a review that names delivery at 4-5 stars praises it ("arrived quickly")
LATELY_DAYS = 30
AROUND_DAYS = 7  # reviews come 2-14 days after an order: a week either side sees the orders of that spell
DELIVERY_WORDS = re.compile(r"\b(?:late|delay\w*|arriv\w*|ship\w*|deliver\w*|melt\w*|damaged)\b"
                            r"|\btook\b[^.]{0,30}?\b(?:days|weeks)\b", re.IGNORECASE)
SPELL_TEST_LEVEL = 0.01  # fixed before any run (bench/results/clv.md, Round 9)
SIGNAL_COLUMNS = ("bad_lately", "delivery_exposure", "delivery_spell")
# The activity change (Round 10), every constant fixed before any run (bench/results/clv.md, Round 10):
OWN_RATE_DAYS = 14  # D1: the recent span, and the unit of the customer's own rate before it
BEFORE_ORDER_DAYS = 30  # D2: how far before the last order its "before" rate reads
ACTIVITY_EPS_PER_DAY = 1 / 30  # D2: one event a month, the before span's resolution; keeps log(0) out
MIN_ACTIVITY_SPAN_DAYS = 3.0  # D2: a shorter span after or before the order is too few days to read a rate
ACTIVITY_COLUMNS = ("activity_vs_own_rate", "activity_since_order")


def delivery_complaints(reviews: pd.DataFrame) -> pd.Series:
    """True for each review of <= `COMPLAINT_MAX_RATING` stars whose title or text names delivery."""
    words = (reviews.get("title", pd.Series("", index=reviews.index)).fillna("").astype(str) + " "
             + reviews.get("text", pd.Series("", index=reviews.index)).fillna("").astype(str))
    return (reviews["rating"] <= COMPLAINT_MAX_RATING) & words.str.contains(DELIVERY_WORDS)


def lapse_signals(events: pd.DataFrame, reviews: pd.DataFrame | None, cutoff: datetime,
                  users: pd.Index) -> pd.DataFrame:
    """`bad_lately` (0/1), `delivery_exposure` (>= 0) and `delivery_spell` (0/1) per user of `users`, as of the
    cutoff; 0 without reviews."""
    out = pd.DataFrame(0.0, index=users, columns=list(SIGNAL_COLUMNS))
    if reviews is None or not len(reviews):
        return out
    c = pd.Timestamp(cutoff)
    r = reviews.assign(ts=pd.to_datetime(reviews["ts"]))
    r = r[r["ts"] <= c]
    if not len(r):
        return out
    complaint = delivery_complaints(r)
    recent = r[(r["ts"] > c - pd.Timedelta(days=LATELY_DAYS)) & ((r["rating"] <= BAD_RATING) | complaint)]
    out["bad_lately"] = users.isin(recent["user_id"].astype(str).unique()).astype(float)

    day = r["ts"].dt.normalize()
    span = pd.date_range(day.min() - pd.Timedelta(days=AROUND_DAYS), c.normalize(), freq="D")
    reviewed = day.value_counts().reindex(span, fill_value=0)
    complained = day[complaint.to_numpy()].value_counts().reindex(span, fill_value=0)
    window = 2 * AROUND_DAYS + 1  # centred, and the days after the cutoff are simply not there yet
    n = reviewed.rolling(window, center=True, min_periods=1).sum()
    k = complained.rolling(window, center=True, min_periods=1).sum()
    share = complaint.mean()
    excess = (k / n.where(n > 0) - share).clip(lower=0).fillna(0.0)
    # P(at least k complaints of n reviews at the shop's share): small = more than chance explains
    spell = pd.Series(binom.sf(k.to_numpy() - 1, n.to_numpy().astype(int), share) < SPELL_TEST_LEVEL,
                      index=span) & (n > 0)

    buys = events[(events["behavior"] == "buy") & (events["ts"] <= c)
                  & (events["ts"] > c - pd.Timedelta(days=LATELY_DAYS))]
    days = buys.assign(day=buys["ts"].dt.normalize()).drop_duplicates(["user_id", "day"])
    days = days.assign(excess=excess.reindex(days["day"]).fillna(0.0).to_numpy(),
                       spell=spell.reindex(days["day"]).fillna(False).to_numpy(dtype=float))
    per_user = days.groupby("user_id")
    out["delivery_exposure"] = per_user["excess"].sum().reindex(users).fillna(0.0).to_numpy(dtype=float)
    out["delivery_spell"] = per_user["spell"].max().reindex(users).fillna(0.0).to_numpy(dtype=float)
    return out



def activity_change(events: pd.DataFrame, cutoff: datetime, users: pd.Index) -> pd.DataFrame:
    """D1 `activity_vs_own_rate` and D2 `activity_since_order` (see the module doc) per user of `users`,
    from the events up to the cutoff only; 0 where a customer's history cannot define one."""
    c = pd.Timestamp(cutoff)
    out = pd.DataFrame(0.0, index=users, columns=list(ACTIVITY_COLUMNS))
    past = events[events["ts"] <= c]
    if not len(past):
        return out
    user = past["user_id"]
    first = past.groupby("user_id")["ts"].min().reindex(users)
    day = pd.Timedelta(days=1)

    # D1: the last OWN_RATE_DAYS against the customer's own mean per OWN_RATE_DAYS before them.
    start = c - pd.Timedelta(days=OWN_RATE_DAYS)
    recent = past[past["ts"] > start].groupby("user_id").size().reindex(users).fillna(0.0)
    earlier = past[past["ts"] <= start].groupby("user_id").size().reindex(users).fillna(0.0)
    span = ((start - first) / day).clip(lower=OWN_RATE_DAYS)  # days of history before the recent span
    own = earlier / span * OWN_RATE_DAYS
    d1 = np.log((recent + 1.0) / (own + 1.0))
    out["activity_vs_own_rate"] = d1.where(earlier > 0, 0.0).fillna(0.0).to_numpy(dtype=float)

    # D2: events per day after the last order's day against the BEFORE_ORDER_DAYS before that day.
    buys = past[past["behavior"] == "buy"]
    last_day = buys["ts"].dt.normalize().groupby(buys["user_id"]).max().reindex(users)
    after_from = last_day + day  # the order's own day counts in neither span
    before_from = pd.concat([last_day - pd.Timedelta(days=BEFORE_ORDER_DAYS), first.dt.normalize()], axis=1).max(axis=1)
    ts = past["ts"]
    n_after = past[ts >= after_from.reindex(user).to_numpy()].groupby("user_id").size().reindex(users).fillna(0.0)
    in_before = (ts >= before_from.reindex(user).to_numpy()) & (ts < last_day.reindex(user).to_numpy())
    n_before = past[in_before].groupby("user_id").size().reindex(users).fillna(0.0)
    span_after = (c - after_from) / day
    span_before = (last_day - before_from) / day
    readable = (span_after >= MIN_ACTIVITY_SPAN_DAYS) & (span_before >= MIN_ACTIVITY_SPAN_DAYS)
    d2 = np.log((n_after / span_after.where(readable) + ACTIVITY_EPS_PER_DAY)
                / (n_before / span_before.where(readable) + ACTIVITY_EPS_PER_DAY))
    out["activity_since_order"] = d2.where(readable, 0.0).fillna(0.0).to_numpy(dtype=float)
    return out
