"""Lifecycle stage of each customer at a cutoff, measured against the customer's own rhythm.

The rules (all in days, order days counted once per calendar day):

- usual gap = (last order day - first order day) / (order days - 1), at least `MIN_GAP_DAYS`;
  a customer with a single order has no gap of their own, so the shop's usual gap (the median
  of the customers' gaps) stands in, and the reasons say so;
- **back after a lapse**: when the latest gap (last order day - the order day before it) was
  `LOST_RATIO` usual gaps or more, the customer was lost before that order and the old rhythm no
  longer describes them: the latest gap is their usual gap until they order again (gap_source
  "latest"). Without it a heavy buyer who orders once after a month of silence reads as "due
  within the week" and leads the churn list; on the demo shop the two such customers at
  2026-06-30 (users 2144, 1538) are ones its generator had already lost (bench/results/clv.md, Round 6);
- overdue ratio = days since the last order / usual gap;
- **visitor**: no order yet (not a customer; left out of customer lists);
- **lost**: overdue ratio >= `LOST_RATIO` (3 gaps of silence), or **after a bad experience**: the
  customer rated their last order (a review dated on or after its day) `BAD_RATING` stars or fewer
  and has not been seen since that order (no visit, cart or order after its day). On the demo shop
  these buy again within 30 days 3-18 % of the time, against 43-50 % for the other non-lost
  customers (bench/results/clv.md, Round 6); without reviews (CDNOW, Taobao) the rule is silent;
- **at_risk**: overdue ratio >= `AT_RISK_RATIO` (overdue against their own rhythm);
- **new**: a single order, not yet overdue;
- **lapsing**: not yet overdue, but will be within the horizon if they do not order;
- **active**: everyone else (ordering on rhythm).

**Lapse within H** (what "will churn this week" means): a customer who is not lost at the
cutoff makes no order in (c, c+H] *and* is overdue at c+H. For a customer who cannot become
overdue within H, P(lapse) = 0; otherwise P(lapse) = P(no order in H), taken from a churn model
(the Transformer's p_churn, or BG/NBD's P(no purchase)). Lost customers get no P(lapse): they
are reported separately, never at the top of a churn list.

**Calibration.** P(no order) from a churn model, gated this way, is not the lapse rate: it is
recalibrated (`calibrated_p_lapse`) on past windows whose lapses are known at c: the cutoffs
c - H, c - H - 14 d, ... (`CALIBRATION_WINDOWS` of them, pooled alike: one window is one month of
the calendar, and the lapse rate moves with it), never on the cutoff being scored. The map is a
logistic regression over logit P(lapse), the rhythm, the stage and the recent visits
(`lapse_features`). **How it was chosen** (`CALIBRATION_CHOICE`, quoted in every answer's
p_lapse_calibration). Round 6: the lowest mean
of the 7- and 30-day ECE at the demo's validation cutoff 2026-05-15 (not a scored cutoff) picked
this regression on 4 windows alike over Round 5's (the one window c - H, 7 features) and over
Platt scaling / isotonic regression on P alone; the pooled design (4 windows, 14 days) came from
a sweep that also read the scored cutoffs. Round 7: the recency weights (half-life fixed before
any run at one window step) against equal weights and against the newest 2 windows only, by a
rule written before the run: at 2026-05-15 only, the lowest mean of the 7- and 30-day ECE, and
lower than the shipped map's on both a 5,000- and a 20,000-user demo shop, shipped recency
weights (half-life 14 d). Round 8: the same rule read at three validation cutoffs (2026-03-15,
04-15, 05-15, none scored), written before its candidates ran, picked the windows alike again
over the recency weights, over review signals as features (lapse_signals.py: a bad experience
lately, the exposure to a spell of late deliveries) and over a 7-day nowcast of the level; by a
margin inside the noise (0.0401 against 0.0410 at 5,000 users, 0.0354 against 0.0356 at 20,000),
but the rule said so (bench/results/clv.md, Round 8). Round 9: the same rule, unchanged, kept it
over two guarded forms of the delivery-trouble exposure (a 0/1 "ordered during a delivery spell",
and the exposure clipped to the range its windows held with a prior N(0, 0.5^2) on its
coefficient): each was lower on one shop size only (bench/results/clv.md, Round 9). Round 10: the
same rule, unchanged, shipped D1, the customer's recent activity against their own rate
(lapse_signals.activity_change, `activity_vs_own_rate`), over the activity since the last order
against before it (D2) and over both; lower on both shop sizes by a margin inside the noise
(0.0398 against 0.0401 at 5,000 users, 0.0349 against 0.0354 at 20,000); on the scored cutoffs,
measured after the choice, it moved the mean and pooled ECE by 0.001 or less (bench/results/clv.md,
Round 10).

Usage:
    stages = lifecycle_frame(events, cutoff, horizon_days=7)   # indexed by user_id
    stages["p_lapse"] = p_lapse(stages, p_no_order)              # p_no_order: Series by user_id
    p, notes = calibrated_p_lapse(events, cutoff, 7, p_no_order_at)  # p_no_order_at(day) -> Series or why not
    stage_reasons(stages.loc["42"])                              # plain sentences for an answer
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

from tools.predictor.calibration import logit, sigmoid
from tools.predictor.lapse_signals import ACTIVITY_COLUMNS, SIGNAL_COLUMNS, activity_change, lapse_signals

BAD_RATING = 2  # a review of this many stars or fewer of the last order, and not seen since: lost (see above)
STAGES = ("new", "active", "lapsing", "at_risk", "lost")  # customers; "visitor" = no order yet
LIVE_STAGES = ("new", "active", "lapsing", "at_risk")  # the stages a customer can lapse from
AT_RISK_RATIO = 1.5
LOST_RATIO = 3.0
MIN_GAP_DAYS = 7.0  # two orders two days apart are not a two-day rhythm


def bad_experience(events: pd.DataFrame, reviews: pd.DataFrame | None, cutoff: datetime,
                   last_order: pd.Series) -> pd.DataFrame:
    """Per user of `last_order` (last order day by user_id): the worst rating they gave on or after
    their last order day, the day of that review, and whether they were not seen since that order
    (no event of any kind after its day). Empty ratings (NaN) without reviews."""
    users = last_order.index
    out = pd.DataFrame({"bad_rating": np.nan, "bad_review_on": pd.NaT}, index=users)
    if reviews is None or not len(reviews):
        return out
    r = reviews[pd.to_datetime(reviews["ts"]) <= pd.Timestamp(cutoff)]
    r = r.assign(ts=pd.to_datetime(r["ts"]), last=last_order.reindex(r["user_id"].astype(str)).to_numpy())
    r = r[(r["ts"].dt.normalize() >= r["last"]) & (r["rating"] <= BAD_RATING)].sort_values(["rating", "ts"])
    first = r.drop_duplicates("user_id").set_index("user_id")
    seen = events[events["ts"] <= cutoff].groupby("user_id")["ts"].max().dt.normalize().reindex(users)
    silent = (seen <= last_order).reindex(first.index).fillna(False).astype(bool)
    first = first[silent.to_numpy()]
    out.loc[first.index, "bad_rating"] = first["rating"].astype(float)
    out.loc[first.index, "bad_review_on"] = first["ts"].dt.normalize()
    return out


def lifecycle_frame(events: pd.DataFrame, cutoff: datetime, horizon_days: int,
                    reviews: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stage and rhythm of every user with an event at or before the cutoff, indexed by user_id.

    Columns: n_orders, days_since_last_order, usual_gap_days (own, or the latest gap when back
    after a lapse; NaN with one order), gap_days (the gap used), gap_source ("own" / "latest" /
    "shop" / None), overdue_ratio, days_overdue,
    next_order_expected (date), overdue_by_end (bool: overdue at c+H with no order),
    at_risk_on / lost_on (dates the customer turns at risk / lost without an order),
    bad_rating / bad_review_on (a review of <= `BAD_RATING` stars of the last order from a customer
    not seen since it: lost after a bad experience; NaN / NaT otherwise, and always without
    `reviews`: user_id, ts, rating), stage.
    """
    past = events[events["ts"] <= cutoff]
    users = pd.Index(sorted(past["user_id"].unique()), name="user_id")
    c = pd.Timestamp(cutoff).normalize()
    buys = past[past["behavior"] == "buy"]
    days = buys["ts"].dt.normalize().groupby(buys["user_id"]).agg(["min", "max", "nunique"]).reindex(users)
    n_orders = days["nunique"].fillna(0).astype(int)
    own_gap = ((days["max"] - days["min"]) / pd.Timedelta(days=1)) / (n_orders - 1).where(n_orders >= 2)
    own_gap = own_gap.clip(lower=MIN_GAP_DAYS)
    order_days = buys.assign(day=buys["ts"].dt.normalize()).drop_duplicates(["user_id", "day"]).sort_values("day")
    order_days["gap"] = order_days.groupby("user_id")["day"].diff() / pd.Timedelta(days=1)
    latest_gap = order_days.groupby("user_id")["gap"].last().reindex(users)  # NaN with one order day
    back = latest_gap >= LOST_RATIO * own_gap  # lost before their last order: see "back after a lapse"
    own_gap = own_gap.where(~back, latest_gap)
    shop_gap = float(own_gap.median()) if own_gap.notna().any() else 30.0
    gap = own_gap.fillna(shop_gap).where(n_orders >= 1)
    since = (c - days["max"]) / pd.Timedelta(days=1)
    ratio = since / gap
    frame = pd.DataFrame({
        "n_orders": n_orders, "days_since_last_order": since, "usual_gap_days": own_gap, "gap_days": gap,
        "gap_source": np.where(back, "latest", np.where(n_orders >= 2, "own", np.where(n_orders == 1, "shop", None))),
        "overdue_ratio": ratio, "days_overdue": (since - gap).clip(lower=0),
        "next_order_expected": days["max"] + pd.to_timedelta(gap, unit="D"),
        "overdue_by_end": (since + horizon_days) >= AT_RISK_RATIO * gap,
        "at_risk_on": days["max"] + pd.to_timedelta(np.ceil(AT_RISK_RATIO * gap), unit="D"),
        "lost_on": days["max"] + pd.to_timedelta(np.ceil(LOST_RATIO * gap), unit="D"),
    }, index=users)
    frame = frame.join(bad_experience(past, reviews, cutoff, days["max"]))
    frame["stage"] = np.select(
        [n_orders == 0, ratio >= LOST_RATIO, frame["bad_rating"].notna(), ratio >= AT_RISK_RATIO, n_orders == 1,
         frame["overdue_by_end"]],
        ["visitor", "lost", "lost", "at_risk", "new", "lapsing"], default="active")
    frame.attrs.update(shop_gap_days=shop_gap, horizon_days=horizon_days, cutoff=c)
    return frame


def p_lapse(stages: pd.DataFrame, p_no_order: pd.Series) -> pd.Series:
    """P(lapse within H) per user: P(no order in H) where the customer would be overdue by c+H, else 0.

    NaN for lost customers and visitors (they cannot lapse: they are gone or never came).
    """
    p = p_no_order.reindex(stages.index).astype(float).where(stages["overdue_by_end"], 0.0)
    return p.where(~stages["stage"].isin(["lost", "visitor"]))


def lapse_labels(stages: pd.DataFrame, events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.Series:
    """The realized lapse (1/0) of every non-lost customer: no order in (c, c+H] and overdue by c+H."""
    c = pd.Timestamp(cutoff)
    future = events[(events["ts"] > c) & (events["ts"] <= c + pd.Timedelta(days=horizon_days))
                    & (events["behavior"] == "buy")]
    keep = stages[stages["stage"].isin(["new", "active", "lapsing", "at_risk"])]
    ordered = keep.index.isin(future["user_id"].unique())
    return pd.Series((~ordered & keep["overdue_by_end"].to_numpy()).astype(int), index=keep.index)


def stage_counts(stages: pd.DataFrame) -> dict[str, int]:
    """Customers per stage, in lifecycle order (visitors left out)."""
    counts = stages["stage"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STAGES}


def stage_reasons(row: pd.Series) -> list[str]:
    """Plain sentences: where the customer stands against their rhythm, and what would move the stage."""
    if row["stage"] == "visitor":  # no order: no days since one (NaN), no gap
        return ["no order yet: a visitor, not a customer"]
    since, gap = int(row["days_since_last_order"]), float(row["gap_days"])
    if row["gap_source"] == "shop":
        rhythm = f"a single order so far, {since} days ago (no usual gap of their own; the shop's usual gap is " \
                 f"{gap:.0f} days)"
    elif row["overdue_ratio"] >= AT_RISK_RATIO:
        rhythm = f"overdue: {since} days since the last order, {row['overdue_ratio']:.1f}x the usual {gap:.0f}-day gap"
    elif since > gap:
        rhythm = f"{since} days since the last order, a little past the usual {gap:.0f}-day gap"
    else:
        rhythm = f"{since} days since the last order, within the usual {gap:.0f}-day gap"
    if row["gap_source"] == "latest":  # back after a lapse: the old rhythm no longer describes them
        rhythm = rhythm.replace("the usual", "the latest") + " (their last order came after that long without " \
                 "one: they were lost before it, so the older, shorter rhythm no longer applies)"
    lost_on = pd.Timestamp(row["lost_on"]).date().isoformat()
    bad = row.get("bad_rating")
    lost = (f"lost after a bad experience: rated the last order {int(bad)} star{'s' if bad != 1 else ''} on "
            f"{pd.Timestamp(row['bad_review_on']).date().isoformat()} and not seen since that order; a service "
            "recovery (an apology, a refund) is the move, only a new order brings them back"
            if row["stage"] == "lost" and pd.notna(bad) and row["overdue_ratio"] < LOST_RATIO
            else f"lost since {lost_on} (3 usual gaps without an order); only a new order brings them back")
    moves = {
        "lost": lost,
        "at_risk": f"an order now brings them back to active; without one they count as lost from {lost_on}",
        "lapsing": f"an order before {pd.Timestamp(row['at_risk_on']).date().isoformat()} keeps them active; "
                   "without one they turn at risk within this horizon",
        "new": "a second order makes them a repeat customer",
        "active": "ordering on rhythm; next order expected around "
                  + pd.Timestamp(row["next_order_expected"]).date().isoformat(),
    }
    return [rhythm, moves[row["stage"]]]


LAPSE_FEATURES = ("logit_p", "log_overdue_ratio", "log_events_14d", "log_events_30d", "log_days_since_event",
                  "log_orders", "is_new", "is_lapsing", "is_at_risk", "log_days_overdue", "log_gap_days",
                  "activity_vs_own_rate")  # the last: Round 10's D1 (lapse_signals.activity_change; CALIBRATION_CHOICE)
MIN_CALIBRATION_OUTCOMES = 50  # fewer customers who could lapse: leave the probabilities as they are
CALIBRATION_WINDOWS = 4  # past cutoffs pooled for the map: c - H, then every CALIBRATION_STEP_DAYS before it
CALIBRATION_STEP_DAYS = 14
CALIBRATION_HALF_LIFE_DAYS: float | None = None  # all windows alike (CALIBRATION_CHOICE); 14.0 was Round 7's
MIN_WINDOW_HISTORY_DAYS = 28  # a window cutoff with less history before it has no rhythm to read: skipped
CALIBRATION_METHODS = ("logistic", "platt", "isotonic")
LOGISTIC_C = 1.0  # the logistic map's L2 strength on standardized features (a prior N(0, C) per coefficient)
CALIBRATION_CHOICE = ("the 4 windows count alike and the recent activity is also read against the customer's own "
                      "rate (D1), chosen over recency weights, review signals, a 7-day nowcast of the level and the "
                      "activity since the last order by a rule fixed before the run: the lowest mean ECE at 7 and "
                      "30 days over three validation cutoffs of the demo shop, on 5,000 and on 20,000 users "
                      "(bench/results/clv.md, Rounds 8-10)")


# The lapse map reads the churn probability as a feature: clipped at 1e-4 (logit +-9.2), so the few
# users a model scores at 1 - 1e-7 cannot dominate the logistic fit (calibration.LOGIT_CLIP keeps them
# apart for ranking instead).
FEATURE_LOGIT_CLIP = 1e-4


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(p, clip=FEATURE_LOGIT_CLIP)


def _scaled(x: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Each standardized column times its prior factor (`LapseCalibration._prior_scale`)."""
    return x * factor


def lapse_features(stages: pd.DataFrame, events: pd.DataFrame, cutoff: datetime, p: pd.Series,
                   reviews: pd.DataFrame | None = None,
                   columns: tuple[str, ...] = LAPSE_FEATURES) -> pd.DataFrame:
    """What the calibration reads beside P(lapse), per user of `p`: rhythm, recent visits, silence
    (`columns`, of `LAPSE_FEATURES`, lapse_signals.SIGNAL_COLUMNS, which read `reviews`, and
    lapse_signals.ACTIVITY_COLUMNS, the change of the customer's own activity).

    Visits matter because a customer whose engagement collapsed (a late or poor order) stops
    browsing before the order rhythm shows it; the rhythm alone cannot tell them from one on time.
    """
    c = pd.Timestamp(cutoff)
    past = events[events["ts"] <= c]
    users = p.index
    last = past.groupby("user_id")["ts"].max().reindex(users)
    out = pd.DataFrame({"logit_p": _logit(p.to_numpy()),
                        "log_overdue_ratio": np.log(stages["overdue_ratio"].reindex(users).to_numpy(dtype=float) + 0.05),
                        "log_days_since_event": np.log1p(((c - last) / pd.Timedelta(days=1)).to_numpy(dtype=float)),
                        "log_orders": np.log(stages["n_orders"].reindex(users).clip(lower=1).to_numpy(dtype=float)),
                        "is_new": (stages["stage"].reindex(users) == "new").to_numpy(dtype=float),
                        "is_lapsing": (stages["stage"].reindex(users) == "lapsing").to_numpy(dtype=float),
                        "is_at_risk": (stages["stage"].reindex(users) == "at_risk").to_numpy(dtype=float),
                        "log_days_overdue": np.log1p(stages["days_overdue"].reindex(users).to_numpy(dtype=float)),
                        "log_gap_days": np.log(stages["gap_days"].reindex(users).to_numpy(dtype=float))},
                       index=users)
    for days in (14, 30):
        recent = past[past["ts"] > c - pd.Timedelta(days=days)]
        out[f"log_events_{days}d"] = np.log1p(recent.groupby("user_id").size().reindex(users).fillna(0).to_numpy())
    if set(columns) & set(SIGNAL_COLUMNS):
        out = out.join(lapse_signals(past, reviews, c, users))
    if set(columns) & set(ACTIVITY_COLUMNS):
        out = out.join(activity_change(past, c, users))
    return out[list(columns)].fillna(0.0)  # a gap the data cannot give reads as "no signal", not a crash


class LapseCalibration:
    """P(lapse) recalibrated on earlier windows whose outcome is known: never on the cutoff scored.

    `method`: "logistic" (a logistic regression over `lapse_features`: logit P(lapse) beside the
    rhythm, the stage and the recent visits, so it fixes both the level of the churn model and
    what it cannot see, a customer who stopped browsing), "platt" (logit P(lapse) alone) or
    "isotonic" (P(lapse) alone, monotone). Only the customers who can lapse are mapped; a P(lapse)
    of 0 (cannot become overdue) stays 0, NaN (lost, visitor) stays NaN. Fit on several windows by
    concatenating them (`calibrated_p_lapse` does).

    Usage:
        calib = LapseCalibration("logistic").fit(p_then, labels_then, lapse_features(stages_then, events, c_then, p_then))
        calibrated = calib.apply(p_now, lapse_features(stages_now, events, c_now, p_now))
    """

    def __init__(self, method: str = "logistic", columns: tuple[str, ...] = LAPSE_FEATURES,
                 clip_to_fit: tuple[str, ...] = (), prior_sd: dict[str, float] | None = None) -> None:
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
        self.method, self.columns = method, list(columns)  # columns: the logistic map's share of the features
        unknown = sorted((set(clip_to_fit) | set(prior_sd or {})) - set(self.columns))
        if unknown:
            raise ValueError(f"clip_to_fit / prior_sd name {', '.join(unknown)}, which the map does not read: "
                             f"add them to its columns ({', '.join(self.columns)})")
        self.clip_to_fit, self.prior_sd = tuple(clip_to_fit), dict(prior_sd or {})
        self.upper: dict[str, float] = {}  # the largest value each clip_to_fit column held in the fit
        self.model = None
        self.fitted = False
        self.outcomes = 0

    def _design(self, p: pd.Series, features: pd.DataFrame) -> np.ndarray:
        if self.method == "logistic":
            design = features.loc[p.index, self.columns]
            if self.upper:  # a value larger than any the map was fitted on reads as the largest seen
                design = design.clip(upper=pd.Series(self.upper).reindex(design.columns), axis=1)
            return design.to_numpy()
        if self.method == "platt":
            return _logit(p.to_numpy())[:, None]
        return p.to_numpy(dtype=float)

    def fit(self, p: pd.Series, labels: pd.Series, features: pd.DataFrame,
            weights: pd.Series | None = None) -> "LapseCalibration":
        """`weights` (by the same index, optional): how much each row counts, e.g. newer windows more."""
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        joined = pd.concat([p.rename("p"), labels.rename("y")], axis=1, join="inner").dropna()
        joined = joined[joined["p"] > 0]
        self.outcomes = len(joined)
        if self.outcomes >= MIN_CALIBRATION_OUTCOMES and 0 < joined["y"].sum() < len(joined):
            w = None if weights is None else weights.reindex(joined.index).fillna(0.0).to_numpy(dtype=float)
            w = None if w is None else w / w.mean()  # mean 1: the regularization means what it meant unweighted
            self.upper = {col: float(features.loc[joined.index, col].max()) for col in self.clip_to_fit}
            design, y = self._design(joined["p"], features), joined["y"].to_numpy()
            if self.method == "isotonic":
                self.model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                self.model.fit(design, y, sample_weight=w)
            else:
                scaler = StandardScaler().fit(design)
                self.model = make_pipeline(scaler, FunctionTransformer(_scaled, kw_args={
                    "factor": self._prior_scale(scaler.scale_)}), LogisticRegression(C=LOGISTIC_C, max_iter=2000))
                self.model.fit(design, y, logisticregression__sample_weight=w)
            self.fitted = True
        return self

    def _prior_scale(self, scale: np.ndarray) -> np.ndarray:
        """Per standardized column, the factor that turns the L2 penalty (prior N(0, C) on each
        coefficient) into N(0, sd^2) on the raw column's coefficient where `prior_sd` names it:
        the raw coefficient is b / scale, so the column is multiplied by sd x scale / sqrt(C)."""
        factor = np.ones(len(self.columns))
        for col, sd in self.prior_sd.items():
            factor[self.columns.index(col)] = sd * scale[self.columns.index(col)] / np.sqrt(LOGISTIC_C)
        return factor

    def apply(self, p: pd.Series, features: pd.DataFrame) -> pd.Series:
        if not self.fitted:
            return p
        out = p.copy()
        mask = p.notna() & (p > 0)
        if mask.any():
            design = self._design(p[mask], features)
            out[mask] = (self.model.predict(design) if self.method == "isotonic"
                         else self.model.predict_proba(design)[:, 1])
        return out


def calibration_windows(events: pd.DataFrame, cutoff: datetime, horizon_days: int,
                        n_windows: int = CALIBRATION_WINDOWS) -> list[datetime]:
    """The past cutoffs the map is fitted on, latest first: c - H - k x step, each with its outcome
    known at c and at least `MIN_WINDOW_HISTORY_DAYS` of data before it."""
    c = pd.Timestamp(cutoff)
    first = events["ts"].min().normalize()
    days = [c - pd.Timedelta(days=horizon_days + k * CALIBRATION_STEP_DAYS) for k in range(n_windows)]
    return [d.to_pydatetime() for d in days if (d - first).days >= MIN_WINDOW_HISTORY_DAYS]


def window_weights(days: list[datetime], half_life_days: float | None) -> list[float]:
    """Weight of each window (latest first): 0.5 ** (days before the latest window / half-life);
    all 1 without a half-life."""
    if half_life_days is None:
        return [1.0] * len(days)
    latest = max(pd.Timestamp(d) for d in days)
    return [0.5 ** ((latest - pd.Timestamp(d)).days / half_life_days) for d in days]


def lapse_population(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> list[str]:
    """The users whose P(no order) a calibration window reads: customers not lost by the rhythm
    rules who would be overdue by c + H (every other P(lapse) is 0 or absent whatever the model says)."""
    stages = lifecycle_frame(events, cutoff, horizon_days)
    return stages.index[stages["stage"].isin(LIVE_STAGES) & stages["overdue_by_end"]].tolist()


def _window(events: pd.DataFrame, then: datetime, horizon_days: int, p_no: pd.Series,
            reviews: pd.DataFrame | None = None, columns: tuple[str, ...] = LAPSE_FEATURES) -> tuple:
    """(P(lapse), realized lapses, features) of the customers who could lapse at `then`."""
    stages = lifecycle_frame(events, then, horizon_days, reviews)
    labels = lapse_labels(stages, events, then, horizon_days)
    p = p_lapse(stages, p_no).reindex(labels.index).fillna(0.0)
    return p, labels, lapse_features(stages, events, then, p, reviews, columns)


def lapse_rate(events: pd.DataFrame, then: datetime, horizon_days: int, reviews: pd.DataFrame | None = None) -> float:
    """The realized lapse rate within H among the customers not lost at `then` (NaN without any)."""
    labels = lapse_labels(lifecycle_frame(events, then, horizon_days, reviews), events, then, horizon_days)
    return float(labels.mean()) if len(labels) else float("nan")


def nowcast_shift(events: pd.DataFrame, cutoff: datetime, window_days: list[datetime], weights: list[float],
                  nowcast_days: int, reviews: pd.DataFrame | None = None) -> float | None:
    """The logit shift of the level: the `nowcast_days` lapse rate realized at c - nowcast_days
    against the same short rate at the map's windows (their weighted mean); None where the fresh
    window has too little history or a rate is 0 or 1."""
    c = pd.Timestamp(cutoff)
    fresh = c - pd.Timedelta(days=nowcast_days)
    if (fresh - events["ts"].min().normalize()).days < MIN_WINDOW_HISTORY_DAYS:
        return None
    now = lapse_rate(events, fresh.to_pydatetime(), nowcast_days, reviews)
    then = np.average([lapse_rate(events, d, nowcast_days, reviews) for d in window_days], weights=weights)
    if not (0 < now < 1 and 0 < then < 1):
        return None
    return float(logit(np.array([now]))[0] - logit(np.array([then]))[0])


def _pooled(parts: list[tuple], weights: list[float]) -> tuple:
    """The windows stacked: (P, labels, features, each row's window weight)."""
    stacked = tuple(pd.concat([part[i] for part in parts], ignore_index=True) for i in range(3))
    w = pd.Series(np.concatenate([np.full(len(part[0]), wt) for part, wt in zip(parts, weights)]),
                  index=stacked[0].index)
    return (*stacked, w)


def calibrated_p_lapse(events: pd.DataFrame, cutoff: datetime, horizon_days: int,
                       p_no_order_at: Callable[[datetime], pd.Series | str],
                       stages: pd.DataFrame | None = None, method: str = "logistic",
                       reviews: pd.DataFrame | None = None, n_windows: int = CALIBRATION_WINDOWS,
                       half_life_days: float | None = CALIBRATION_HALF_LIFE_DAYS,
                       features: tuple[str, ...] = LAPSE_FEATURES,
                       nowcast_days: int | None = None, clip_to_fit: tuple[str, ...] = (),
                       prior_sd: dict[str, float] | None = None) -> tuple[pd.Series, dict]:
    """(P(lapse within H) at the cutoff, recalibrated on the past windows pooled; what was fitted).

    `method`: see `LapseCalibration` (the app uses "logistic"; bench/lifecycle_eval.py compares).
    `reviews`: as for `lifecycle_frame`, so that the windows' stages follow the same rules.
    `n_windows`, `half_life_days`: how many past windows, and how fast an older one counts less
    (`window_weights`; None: all alike); the defaults are the shipped map (`CALIBRATION_CHOICE`).
    `features`: what the logistic map reads (`lapse_features`' columns). `nowcast_days`: where
    shorter than H, the map's logit is shifted by `nowcast_shift` (the level the freshest short
    window shows); None: not shifted. `clip_to_fit`, `prior_sd`: see `LapseCalibration`.

    `p_no_order_at(day)` gives the churn model's P(no order in H) by user_id as of `day` (the same
    model at every cutoff), or a sentence saying why it has none for that day (e.g. no scores
    stored as of then): that window is skipped; with none left, P(lapse) is left as the model gave
    it and the notes carry the sentence.
    """
    c = pd.Timestamp(cutoff)
    stages = lifecycle_frame(events, cutoff, horizon_days, reviews) if stages is None else stages
    p_now = p_lapse(stages, p_no_order_at(cutoff))
    known = events[events["ts"] <= c]
    latest = (c - pd.Timedelta(days=horizon_days)).date().isoformat()
    notes = {"method": "logistic regression on P(lapse), rhythm, stage and recent visits",
             "fitted_at": latest, "outcomes_until": c.date().isoformat()}
    days = calibration_windows(known, cutoff, horizon_days, n_windows)
    if not days:
        return p_now, {**notes, "fitted": False,
                       "why": f"less than {MIN_WINDOW_HISTORY_DAYS} days of history before {latest} to fit on"}
    windows, used, skipped = [], [], []
    for then in days:
        p_no = p_no_order_at(then)
        if isinstance(p_no, str):
            skipped.append(p_no)
        else:
            windows.append(_window(known, then, horizon_days, p_no, reviews, features))
            used.append(then.date().isoformat())
    if not windows:
        return p_now, {**notes, "fitted": False, "why": skipped[0]}
    weights = window_weights([pd.Timestamp(d) for d in used], half_life_days)
    calib = LapseCalibration(method, features, clip_to_fit, prior_sd).fit(*_pooled(windows, weights))
    if not calib.fitted:
        return p_now, {**notes, "fitted": False,
                       "why": f"{calib.outcomes} customers could lapse in the windows, fewer than "
                              f"{MIN_CALIBRATION_OUTCOMES} (or all alike)"}
    methods = {"logistic": notes["method"], "platt": "Platt scaling of P(lapse)",
               "isotonic": "isotonic regression on P(lapse)"}
    live = p_now.dropna()
    out = p_now.copy()
    out[live.index] = calib.apply(live, lapse_features(stages, known, cutoff, live, reviews, features))
    shift = (nowcast_shift(known, cutoff, [pd.Timestamp(d).to_pydatetime() for d in used], weights, nowcast_days,
                           reviews) if nowcast_days and nowcast_days < horizon_days else None)
    if shift is not None:
        moved = out[live.index]
        moved = moved.where(moved <= 0, sigmoid(logit(moved.to_numpy()) + shift))
        out[live.index] = moved
    return out, {**notes, "fitted": True, "outcomes": calib.outcomes,
                 "method": methods[method] + (f", {CALIBRATION_CHOICE}" if method == "logistic" else ""),
                 "windows": used, **({"half_life_days": half_life_days} if half_life_days else {}),
                 **({"skipped": skipped} if skipped else {}),
                 **({"nowcast_logit_shift": round(shift, 4)} if shift is not None else {})}
