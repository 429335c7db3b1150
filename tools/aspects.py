"""Which aspects of a purchase a review talks about (delivery, quality, price ...), in English and Chinese.

A review is cut into clauses (sentences, and for Chinese also comma-separated parts, since
"物流很快，质量一般" praises one aspect and faults another in one sentence); each clause is
matched against per-aspect keyword patterns. Keyword lists are deliberately small and
precise: a missed mention costs less than a wrong one in a summary an agent will quote.
The sentiment of each clause comes from `tools.reviews`.

Taste and freshness are aspects of one kind of product (food), and their words mean something
else in other shops: in a Chinese book shop's reviews "新鲜" is "novel" and "味道" the smell of the
ink. A summary reports them only for a shop whose reviews talk about them (`aspects_for_shop`).
A word with a common sense outside its aspect is listed only in forms that fix the sense:
"态度" alone is an author's or a character's attitude; "服务态度" and "客服态度" are found by 服务 / 客服.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

# English patterns are matched on lower-cased text with word boundaries; Chinese ones as substrings.
ASPECT_KEYWORDS: dict[str, dict[str, list[str]]] = {
    "delivery": {
        "en": [r"ship(?:ping|ped|s|ment)?", r"deliver(?:y|ed|ies)?", r"arriv(?:e|ed|al|es)", r"courier",
               r"took (?:weeks|days|forever)", r"on time", r"tracking"],
        "zh": ["物流", "快递", "发货", "送货", "到货", "配送", "送达", "运输", "邮寄"],
    },
    "quality": {
        "en": [r"quality", r"broke(?:n)?", r"defective", r"durable", r"sturdy", r"flimsy", r"cheaply made",
               r"well made", r"poorly made", r"fake", r"genuine"],
        "zh": ["质量", "品质", "做工", "材质", "耐用", "正品", "假货", "次品", "质感"],
    },
    "price": {
        "en": [r"price(?:d|s)?", r"expensive", r"cheap(?:er|est)?", r"cost(?:s|ly)?", r"value", r"worth",
               r"bargain", r"overpriced", r"deal", r"pricey", r"money"],
        "zh": ["价格", "价钱", "便宜", "太贵", "性价比", "划算", "优惠", "实惠", "折扣", "值这个价"],
    },
    "packaging": {
        "en": [r"packag(?:e|es|ed|ing)", r"box(?:es)?", r"container", r"wrapp(?:er|ing|ed)", r"seal(?:ed)?",
               r"crushed", r"dented", r"leak(?:ed|ing|s)?", r"jar", r"bottle"],
        "zh": ["包装", "盒子", "纸箱", "破损", "压坏", "封口", "漏了", "外包装", "袋子"],
    },
    "taste": {
        "en": [r"tast(?:e|es|ed|y|ing)", r"flavou?r(?:s|ed|ful)?", r"delicious", r"bland", r"yumm?y",
               r"salty", r"bitter", r"sweet(?:ness)?", r"texture", r"aftertaste"],
        "zh": ["味道", "口感", "好吃", "难吃", "口味", "好喝", "难喝", "太甜", "太咸", "香味"],
    },
    "service": {
        "en": [r"customer service", r"service", r"seller", r"refund(?:ed)?", r"return(?:ed)?",
               r"replacement", r"support", r"vendor", r"merchant", r"respon(?:d|ded|se|sive)"],
        "zh": ["客服", "服务", "态度恶劣", "售后", "退货", "退款", "换货", "卖家", "商家"],
    },
    "freshness": {
        "en": [r"fresh(?:ness)?", r"stale", r"expir(?:ed|ation|y)", r"mou?ldy?", r"rancid", r"spoiled",
               r"best before"],
        "zh": ["新鲜", "过期", "保质期", "变质", "发霉", "不新鲜"],
    },
}
ASPECTS: tuple[str, ...] = tuple(ASPECT_KEYWORDS)
# Stamped on a home's cached review analysis (tools/reviews.py): changed lists re-read its mentions.
KEYWORDS_FINGERPRINT = hashlib.sha256(json.dumps(ASPECT_KEYWORDS, sort_keys=True).encode()).hexdigest()[:12]
# Aspects of food only; elsewhere their keywords are mostly other senses (see the module docstring).
PRODUCT_ASPECTS: tuple[str, ...] = ("taste", "freshness")
# Share of a shop's reviews that must mention a product aspect for its summaries to report it. Food shops:
# taste 58-60 %, freshness 7-18 % of the reviews; the Chinese book shop: 0.5 % and 0.7 %, all misreads
# (bench/results/hardening.md, Round 10, hard13).
MIN_SHOP_SHARE = 0.02

_CJK = re.compile(r"[\u4e00-\u9fff]")
# Sentence ends in both scripts; Chinese commas also separate clauses about different aspects.
_SPLIT_EN = re.compile(r"(?<=[.!?;])\s+|\n+|\s+but\s+|\s+however,?\s+", re.IGNORECASE)
_SPLIT_ZH = re.compile(r"[。！？；!?;，,\n]+|但是|不过|可是")
_EN_PATTERNS = {a: re.compile(r"\b(?:" + "|".join(kw["en"]) + r")\b") for a, kw in ASPECT_KEYWORDS.items()}
_ZH_PATTERNS = {a: re.compile("|".join(map(re.escape, kw["zh"]))) for a, kw in ASPECT_KEYWORDS.items()}


def is_chinese(text: str, threshold: float = 0.2) -> bool:
    """True when at least `threshold` of the non-space characters are CJK ideographs."""
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and sum(1 for c in chars if _CJK.match(c)) / len(chars) >= threshold


def split_clauses(text: str) -> list[str]:
    """Cut a review into clauses; empty pieces are dropped."""
    splitter = _SPLIT_ZH if is_chinese(text) else _SPLIT_EN
    return [part.strip() for part in splitter.split(text or "") if part and part.strip()]


def find_aspects(clause: str) -> list[str]:
    """The aspects a clause mentions, in `ASPECTS` order (English and Chinese keywords both tried)."""
    lowered = clause.lower()
    return [a for a in ASPECTS if _EN_PATTERNS[a].search(lowered) or _ZH_PATTERNS[a].search(clause)]


def keyword_position(clause: str, aspect: str) -> int:
    """Where the first keyword of `aspect` starts in `clause` (-1 when absent): quotes centre on it."""
    m = _EN_PATTERNS[aspect].search(clause.lower()) or _ZH_PATTERNS[aspect].search(clause)
    return m.start() if m else -1


def aspects_for_shop(reviews_per_aspect: dict[str, int], n_reviews: int) -> tuple[str, ...]:
    """The aspects a shop's summaries report, in `ASPECTS` order.

    Args:
        reviews_per_aspect: aspect -> how many of the shop's reviews mention it.
        n_reviews: how many reviews the shop has (all of them, not one item's).
    """
    floor = MIN_SHOP_SHARE * n_reviews
    return tuple(a for a in ASPECTS if a not in PRODUCT_ASPECTS or reviews_per_aspect.get(a, 0) >= max(floor, 1))


@dataclass(frozen=True)
class AspectMention:
    """One clause of one review that mentions one aspect."""

    review_index: int  # position of the review in the batch analysed
    aspect: str
    clause: str


def aspect_mentions(texts: list[str]) -> list[AspectMention]:
    """Every (review, aspect, clause) mention in a batch of review texts."""
    mentions: list[AspectMention] = []
    for i, text in enumerate(texts):
        for clause in split_clauses(text):
            for aspect in find_aspects(clause):
                mentions.append(AspectMention(i, aspect, clause))
    return mentions
