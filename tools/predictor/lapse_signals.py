"""Signs of a bad experience that the lapse map can read beside the rhythm, from reviews only.

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

Usage:
    signals = lapse_signals(events, reviews, cutoff, users)   # columns bad_lately, delivery_exposure, delivery_spell
"""

from __future__ import annotations

import re
from datetime import datetime

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

