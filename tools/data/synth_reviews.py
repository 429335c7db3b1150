"""Review texts for the demo shop, drawn from the real CC0 Amazon Fine Food reviews.

A bought line is reviewed more often when it went wrong (late order, poor quality); its rating
follows the experience, and its text is a real review with that rating that mentions the
matching aspect (delivery, quality, packaging, taste, price, service), from a pet-food review
for pet aisles and from a grocery review otherwise, falling back to wider pools when a narrow
one is too small. So a late order in the demo shop reads like a real 1-2 star delivery complaint.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tools.data.synth_process import ProcessConfig

FINEFOOD_CSV = Path(__file__).resolve().parents[2] / "data" / "amazon_finefood_reviews_7567.csv"
ASPECTS: dict[str, str] = {
    "delivery": r"\b(?:deliver\w*|shipping|shipped|shipment|arriv\w+|late|delayed|slow|in transit|melted|"
                r"damaged|crushed|took \w+ (?:days|weeks))\b",
    "quality": r"\b(?:quality|stale|expired|spoiled|rancid|mou?ldy?|rotten|bugs?|worms?|bad batch|inedible)\b",
    "price": r"\b(?:price\w*|expensive|cheap\w*|overpriced|deal|value|cost\w*|bargain)\b",
    "packaging": r"\b(?:packag\w*|box|boxes|container|sealed|seal|leak\w*|dented|crushed|broken)\b",
    "taste": r"\b(?:tastes?|tasted|tasty|flavou?rs?|delicious|yummy|bland)\b",
    "service": r"\b(?:customer service|seller|refund\w*|returned|replacement|vendor|company)\b",
}
# Narrower pools for complaints: a late order prefers a text about a slow or damaged delivery,
# a poor-quality line a text about stale, spoiled or broken goods; each falls back to its aspect.
PROBLEM_ASPECTS: dict[str, tuple[str, str]] = {
    "delivery_problem": ("delivery", r"\b(?:arrived (?:late|damaged|broken|crushed|open|opened|melted|stale|spoiled)|"
                                     r"(?:shipping|delivery|shipment) (?:was|took|is) (?:slow|late|delayed|forever)|"
                                     r"slow (?:shipping|delivery)|delayed|took (?:over |almost |nearly )?(?:a |one |"
                                     r"two |three |four |\d+ )?(?:weeks?|months?)|never (?:arrived|received|came|"
                                     r"showed)|(?:weeks|days) to (?:arrive|ship|get here)|melted|in transit|lost in "
                                     r"(?:the mail|transit)|damaged|crushed)\b"),
    "quality_problem": ("quality", r"\b(?:stale|expired|spoiled|rancid|mou?ldy?|rotten|bugs|worms|bad batch|"
                                   r"inedible|hard as a rock|off taste|smelled (?:bad|awful|terrible))\b"),
}
_PET = r"\b(?:dogs?|cats?|pupp(?:y|ies)|kittens?|pets?|canine|feline|kibble)\b"
MIN_POOL = 8  # narrower pools smaller than this fall back to a wider one

# experience kind -> rating distribution over 1..5 and aspect distribution
_KINDS = ("good", "late", "poor", "late_poor")
_RATINGS = {"good": [0.0, 0.0, 0.05, 0.3, 0.65], "late": [0.3, 0.3, 0.25, 0.12, 0.03],
            "poor": [0.5, 0.3, 0.15, 0.05, 0.0], "late_poor": [0.6, 0.3, 0.1, 0.0, 0.0]}
_ASPECT_MIX = {"good": {"taste": 0.4, "quality": 0.2, "price": 0.2, "delivery": 0.1, "packaging": 0.05,
                        "service": 0.05},
               "late": {"delivery_problem": 0.85, "service": 0.15},
               "poor": {"quality_problem": 0.6, "packaging": 0.2, "taste": 0.2},
               "late_poor": {"delivery_problem": 0.5, "quality_problem": 0.5}}


@lru_cache(maxsize=2)
def load_review_pool(path: str = str(FINEFOOD_CSV)) -> pd.DataFrame:
    """The Fine Food reviews with a boolean column per aspect and a `pet` column.

    Raises:
        FileNotFoundError: The CSV is missing; it ships in the repository under data/.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: the Amazon Fine Food reviews (CC0) are missing; restore "
                                "data/amazon_finefood_reviews_7567.csv from the repository")
    df = pd.read_csv(path)
    df = df[df["Text"].notna() & df["Score"].between(1, 5)].reset_index(drop=True)
    # RE2 through pyarrow: ~20x faster than Python's re on these word-boundary alternations.
    blob = pa.array((df["Summary"].fillna("") + " " + df["Text"]).str.lower().to_numpy(dtype=object))
    for aspect, pattern in ASPECTS.items():
        df[aspect] = pc.match_substring_regex(blob, pattern).to_numpy(zero_copy_only=False)
    for aspect, (_, pattern) in PROBLEM_ASPECTS.items():
        df[aspect] = pc.match_substring_regex(blob, pattern).to_numpy(zero_copy_only=False)
    df["pet"] = pc.match_substring_regex(blob, _PET).to_numpy(zero_copy_only=False)
    return df


def _pool(df: pd.DataFrame, pet: bool, aspect: str, rating: int) -> np.ndarray:
    """Row indices of the narrowest pool with at least MIN_POOL texts."""
    by_rating = df["Score"].to_numpy() == rating
    domain = df["pet"].to_numpy() == pet
    masks = []
    if aspect in PROBLEM_ASPECTS:
        narrow = df[aspect].to_numpy()
        masks += [by_rating & domain & narrow, by_rating & narrow]
        aspect = PROBLEM_ASPECTS[aspect][0]
    has = df[aspect].to_numpy()
    for mask in (*masks, by_rating & domain & has, by_rating & has, by_rating & domain, by_rating):
        rows = np.flatnonzero(mask)
        if len(rows) >= MIN_POOL:
            return rows
    return np.flatnonzero(by_rating)


def draw_reviews(buys: pd.DataFrame, is_pet_item: np.ndarray, cfg: ProcessConfig, rng: np.random.Generator,
                 end_sec: int) -> pd.DataFrame:
    """Pick which bought lines get a review and give each a rating, a date and a real text.

    Args:
        buys: One row per bought line: user, item (index), sec, late, poor, line (row id).
        is_pet_item: (n_items,) whether the item sits in a pet aisle.
        cfg: Review probabilities.
        rng: Seeded generator.
        end_sec: Reviews dated at or after this second (DEMO_END) are not written yet.

    Returns:
        One row per review: line, user, item, sec, rating, aspect, source_row (index in the pool
        frame), title, text, helpful_votes, total_votes.
    """
    pool = load_review_pool()
    late, poor = buys["late"].to_numpy(), buys["poor"].to_numpy()
    kind = np.where(late & poor, 3, np.where(poor, 2, np.where(late, 1, 0)))
    p = np.where(poor, cfg.review_prob_poor, np.where(late, cfg.review_prob_late, cfg.review_prob_good))
    chosen = rng.random(len(buys)) < p
    sel = buys[chosen].reset_index(drop=True)
    kind = kind[chosen]
    n = len(sel)
    rating = np.empty(n, dtype=np.int64)
    aspect = np.empty(n, dtype=object)
    for k, name in enumerate(_KINDS):
        rows = np.flatnonzero(kind == k)
        rating[rows] = rng.choice(5, size=len(rows), p=_RATINGS[name]) + 1
        mix = _ASPECT_MIX[name]
        aspect[rows] = np.array(list(mix))[rng.choice(len(mix), size=len(rows), p=list(mix.values()))]
    # A late order is reviewed once it finally arrives: later than an on-time one.
    delay_days = np.where(kind % 2 == 1, rng.integers(5, 15, n), rng.integers(2, 10, n))
    sec = sel["sec"].to_numpy() + delay_days * 86_400 + rng.integers(0, 86_400, n)
    pet = is_pet_item[sel["item"].to_numpy()] if n else np.zeros(0, bool)
    source = np.empty(n, dtype=np.int64)
    for key in sorted(set(zip(pet.tolist(), aspect.tolist(), rating.tolist()))):
        rows = np.flatnonzero((pet == key[0]) & (aspect == key[1]) & (rating == key[2]))
        candidates = _pool(pool, *key)
        source[rows] = candidates[rng.integers(0, len(candidates), len(rows))]
    total = rng.poisson(1.5, n)
    out = pd.DataFrame({"line": sel["line"].to_numpy(), "user": sel["user"].to_numpy(),
                        "item": sel["item"].to_numpy(), "sec": sec, "rating": rating,
                        "aspect": pd.Series(aspect.astype(str)).str.removesuffix("_problem").to_numpy(),
                        "source_row": source,
                        "title": pool["Summary"].fillna("").to_numpy()[source],
                        "text": pool["Text"].to_numpy()[source],
                        "helpful_votes": rng.binomial(total, 0.7), "total_votes": total})
    out = out[out["sec"] < end_sec]
    return out.sort_values(["sec", "user"], kind="stable").reset_index(drop=True)


def mentions(text: str, aspect: str) -> bool:
    """Whether a text mentions an aspect by the same keywords the pools use."""
    return re.search(ASPECTS[aspect], text.lower()) is not None
