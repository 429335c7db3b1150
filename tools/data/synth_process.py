"""The demo shop's latent process: per-user engagement that decays, renewed or hurt by orders.

Time runs in whole UTC days. Each user u has, at the start of day d, an engagement
e[u, d] in (0, 1]. During day d:

* sessions ~ Poisson(rate_u * season(d) * e) (new users get one extra session on signup day);
* each session is a buying session with probability pi_u(e) = buy_u * (0.25 + 0.75 e);
* each buying session is one order: late with probability late(d), each unit bought poor
  quality with its item's probability.

At the end of the day the day's orders act on e: every late order multiplies it by
`late_mult`, every poor-quality item by `poor_mult`, every order with neither renews it,
e <- 1 - (1 - e)(1 - renewal). Then it decays towards the user's floor:
e <- floor_u + (e - floor_u) * exp(-1 / decay_days_u).

Without a buy, e evolves deterministically (only orders move it), and sessions are Poisson
with independent buy flags, so buying sessions on day d are Poisson(rate*season*e*pi(e)).
Hence the exact oracle: P(no buy in days d0..d0+H-1 | e[u, d0]) = exp(-sum_k rate_u
season(d0+k) e_k pi_u(e_k)) with e_k the no-buy decay path. `churn_probability` computes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import numpy as np

from tools.data.synth_catalog import SEGMENT_SHARES


@dataclass(frozen=True)
class ProcessConfig:
    """Every constant of the generative process (saved as YAML beside the oracle)."""

    existing_share: float = 0.5  # users who were customers before DEMO_START (no signup session)
    rate_median: float = 0.38  # sessions per day at e = 1, lognormal across users
    rate_sigma: float = 0.6
    buy_beta: tuple[float, float] = (4.0, 6.0)  # per-session buy probability at e = 1
    decay_days_median: float = 30.0  # engagement half-life scale, lognormal across users
    decay_days_sigma: float = 0.45
    floor_beta: tuple[float, float] = (1.2, 40.0)  # engagement never decays below this
    init_new_beta: tuple[float, float] = (6.0, 2.0)  # e on signup day
    init_existing_beta: tuple[float, float] = (2.0, 3.0)  # e on DEMO_START for existing users
    renewal: float = 0.35  # good order: e <- 1 - (1 - e)(1 - renewal)
    late_mult: float = 0.3  # late order: e <- e * late_mult
    poor_mult: float = 0.35  # poor-quality unit: e <- e * poor_mult
    late_prob: float = 0.05  # ordinary chance that an order arrives late
    # Carrier disruptions: (first day, last day, late probability), UTC dates inclusive.
    disruptions: tuple[tuple[str, str, float], ...] = (("2026-03-09", "2026-03-29", 0.35),
                                                       ("2026-05-18", "2026-05-27", 0.25))
    bad_item_share: float = 0.06
    poor_prob_normal: float = 0.015
    poor_prob_bad: float = 0.35
    weekend_factor: float = 1.25  # Saturday and Sunday sessions
    # Promotions: (first day, last day, session multiplier).
    promotions: tuple[tuple[str, str, float], ...] = (("2026-02-13", "2026-02-15", 1.5),
                                                      ("2026-04-20", "2026-04-26", 1.6))
    views_mean: float = 1.8  # extra views per session beyond the first (Poisson), capped below
    max_views: int = 10
    cart_prob_buying: float = 0.45  # per view, in a buying session (at least one cart)
    cart_prob_browsing: float = 0.07  # per view, in a session that buys nothing
    fav_prob: float = 0.03
    checkout_prob: float = 0.85  # carted item bought in a buying session (at least one)
    stay_prob: float = 0.45  # next view in the same category
    complement_prob: float = 0.2  # next view in a complement category (partner item half the time)
    continue_prob: float = 0.3  # session opens in the category the last session ended in
    after_buy_prob: float = 0.15  # session opens in a complement of the last bought category
    repeat_max: float = 0.8  # per-user repeat-purchase propensity ~ U(0.2, repeat_max)
    review_prob_good: float = 0.06
    review_prob_late: float = 0.3
    review_prob_poor: float = 0.45
    segment_shares: dict[str, float] = field(default_factory=lambda: dict(SEGMENT_SHARES))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UserParams:
    """Per-user latent parameters, arrays of shape (n_users,)."""

    segment: np.ndarray  # int index into segment_shares
    existing: np.ndarray  # bool: customer before DEMO_START
    signup_day: np.ndarray  # int: day index of signup (0 for existing users)
    rate: np.ndarray
    buy: np.ndarray
    decay: np.ndarray  # per-day multiplier exp(-1/decay_days)
    floor: np.ndarray
    init: np.ndarray
    repeat: np.ndarray
    cart_bias: np.ndarray  # scales cart probabilities (some users cart everything)


def draw_user_params(n_users: int, n_days: int, cfg: ProcessConfig, rng: np.random.Generator) -> UserParams:
    """Draw every user's latent parameters (seeded by the caller)."""
    shares = np.array(list(cfg.segment_shares.values()))
    segment = rng.choice(len(shares), size=n_users, p=shares / shares.sum())
    existing = rng.random(n_users) < cfg.existing_share
    signup_day = np.where(existing, 0, rng.integers(0, n_days, n_users))
    decay_days = cfg.decay_days_median * np.exp(cfg.decay_days_sigma * rng.standard_normal(n_users))
    init = np.where(existing, rng.beta(*cfg.init_existing_beta, n_users), rng.beta(*cfg.init_new_beta, n_users))
    return UserParams(
        segment=segment, existing=existing, signup_day=signup_day,
        rate=cfg.rate_median * np.exp(cfg.rate_sigma * rng.standard_normal(n_users)),
        buy=rng.beta(*cfg.buy_beta, n_users), decay=np.exp(-1.0 / decay_days),
        floor=rng.beta(*cfg.floor_beta, n_users), init=init,
        repeat=rng.uniform(0.2, cfg.repeat_max, n_users), cart_bias=rng.lognormal(0.0, 0.3, n_users))


def _in_window(day: datetime, start: str, end: str) -> bool:
    return datetime.fromisoformat(start) <= day <= datetime.fromisoformat(end)


def season(start: datetime, day_index: int, cfg: ProcessConfig) -> float:
    """Deterministic calendar multiplier of the session rate for a day (weekends, promotions)."""
    day = start + timedelta(days=int(day_index))
    factor = cfg.weekend_factor if day.weekday() >= 5 else 1.0
    for first, last, mult in cfg.promotions:
        if _in_window(day, first, last):
            factor *= mult
    return factor


def late_probability(start: datetime, day_index: int, cfg: ProcessConfig) -> float:
    """Chance that an order placed on this day arrives late (carrier disruptions raise it)."""
    day = start + timedelta(days=int(day_index))
    prob = cfg.late_prob
    for first, last, p in cfg.disruptions:
        if _in_window(day, first, last):
            prob = max(prob, p)
    return prob


def buy_session_prob(params: UserParams, e: np.ndarray, users: np.ndarray | slice = slice(None)) -> np.ndarray:
    """pi_u(e): the chance that one session of the user ends in an order."""
    return params.buy[users] * (0.25 + 0.75 * e)


def churn_probability(params: UserParams, e0: np.ndarray, users: np.ndarray, start: datetime,
                      first_day: int, horizon_days: int, cfg: ProcessConfig) -> np.ndarray:
    """Exact P(no order in days first_day .. first_day + H - 1) given e at the start of first_day.

    Args:
        params: Latent parameters of all users.
        e0: Engagement of `users` at the start of `first_day`.
        users: Indices of the users to score.
        start: Date of day index 0 (DEMO_START).
        first_day: Day index of the cutoff (the cutoff is that day's midnight).
        horizon_days: H, whole days after the cutoff.
        cfg: The process constants.
    """
    e = e0.astype(np.float64).copy()
    hazard = np.zeros_like(e)
    for k in range(horizon_days):
        s = season(start, first_day + k, cfg)
        hazard += params.rate[users] * s * e * buy_session_prob(params, e, users)
        # No order on this path, so only the decay towards the floor moves e.
        e = params.floor[users] + (e - params.floor[users]) * params.decay[users]
    return np.exp(-hazard)
