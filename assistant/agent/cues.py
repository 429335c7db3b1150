"""Words that say what kind of answer a question wants, in the languages staff ask in.

The exemplar prior (assistant/agent/tool_prior.py) embeds questions with an English-only MiniLM: for
"¿Compran menos los clientes home_cook que los demás?" or "新老客户的购买率对比" it has no opinion, and
the 0.5B model alone prefers the at-risk list for any question about customers. These cue lists are
what the router reads where the prior is blind (assistant/agent/router.py `prefer_cued_tools`):

- `compares(q)`: the question sets groups side by side ("vs", "than", "compared with", "más que",
  "par rapport à", "im Vergleich", "do que", "比较", "区别");
- `against_the_rest(q)`: one group against an unnamed rest ("than the others", "everyone else",
  "los demás", "les autres", "die übrigen", "os outros", "其他");
- `groupings_cued(q)`: which way of grouping customers the question's words point to, as
  segment_report's `segment_by` choices: how long they have been customers ("new vs old customers",
  "Neukunden", "老客户", a tenure phrase like "with us over a year"), what they spend ("big spenders",
  "gros acheteurs"), their first purchase ("primera compra", "首次购买"), the shop's segments;
- `asks_rate(q)`: a rate or an overall figure, not a list of people ("churn rate", "tasa", "taux", "率");
- `about_carts(q)`: carts and baskets ("carrito", "panier", "Warenkorb", "carrinho", "购物车");
- `about_next_purchase(q)`: what a named customer will buy next ("achètera ensuite", "próxima compra", "次に買");
- `asks_why_of_a_customer(q)`: why a named customer is at risk, their stage ("pourquoi", "warum", "なぜ");
- `about_lookalikes(q)`: customers like a given one ("parecidos com", "ähnlich wie", "semblables à", "类似");
- `about_reviews(q)`: what customers say ("complain", "quejas", "avis", "Bewertungen", "抱怨", "差评"), unless
  the question is about who will leave;
- `review_side(q)`: complaints ("negative") or praise ("positive"), for the composer to quote that side.

Each list is a vocabulary, not a question: no rule names a phrasing of an evaluation set. A cue
only reorders the model's ranking or settles a closed choice; the model and the tools' own checks
still decide everything else.
"""

from __future__ import annotations

import re

from assistant.agent.mentions import referenced_ids
from assistant.agent.time_spans import tenure_spans
from assistant.agent.tool_specs import ENTITY_ARGUMENTS, ToolSpec, _moved_first, named_members


# Chinese characters and Japanese kana: words in these scripts have no spaces around them, so they match as substrings.
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _any(*words: str) -> re.Pattern:
    """One pattern for the words: whole words for Latin script, substrings for Chinese and Japanese."""
    latin = [w for w in words if not _CJK_CHAR.search(w)]
    cjk = [w for w in words if _CJK_CHAR.search(w)]
    parts = [rf"(?<![\w])(?:{'|'.join(latin)})(?![\w])"] if latin else []
    parts += [f"(?:{'|'.join(cjk)})"] if cjk else []
    return re.compile("|".join(parts), re.I)


_COMPARE = _any(
    # English
    r"vs\.?", "versus", "than", r"compar\w*", "against", "side by side", r"differ\w*", "gap", "relative to",
    # Spanish / Portuguese
    r"más\s+que", r"menos\s+que", r"mais\s+(?:do\s+)?que", r"menos\s+(?:do\s+)?que", r"do\s+que", r"compar\w*",
    r"frente\s+a", r"diferen\w*", "entre",
    # comparatives split by an adjective: "más alto que", "plus faible ... que", "mais baixa do que", "più alto di",
    # "meno degli altri" (Round 9, hd09: "un risque de churn plus faible ce mois-ci que les nouveaux")
    r"(?:más|menos|mais|plus|moins)\s+\w+(?:\s+\S+){0,4}?\s+(?:do\s+|de\s+)?que",
    r"(?:più|meno)\s+(?:\w+\s+)?(?:di|che|del|dello|della|dei|degli|delle)",
    r"(?:mayor|menor|maior|menor|supérieure?|inférieure?|superiore|inferiore)\w*\s+(?:que|a|à|do\s+que|di)",
    # French / Italian
    r"plus\s+que", r"moins\s+que", r"par\s+rapport", r"rispetto", r"più\s+(?:di|che)", r"meno\s+(?:di|che)",
    r"confront\w*",
    # German
    "als", r"vergleich\w*", r"unterschied\w*", "zwischen", "gegenüber",
    # Chinese
    "比较", "对比", "相比", "比起", "区别", "差异", "差别", "不同",
)
_REST = _any(
    "the rest", r"(?:the\s+)?others", "everyone else", "everybody else", r"all\s+other\s+\w+", r"other\s+customers",
    r"the\s+remaining", r"los\s+demás", r"el\s+resto", r"los\s+otros", r"las\s+otras", r"les\s+autres",
    r"le\s+reste", r"die\s+übrigen", r"den\s+anderen", r"dem\s+rest", r"os\s+outros", r"o\s+resto",
    r"os\s+demais", r"gli\s+altri", "其他", "其余", "别的",
)
# segment_report's groupings (`segment_by` choices), by the words that point to each.
_GROUPINGS = {
    "tenure": _any(
        r"new(?:er)?\s+(?:customers|clients|buyers|shoppers|users)", r"long[- ]?(?:time|standing)", "veterans?",
        "newcomers", r"old(?:er)?\s+(?:customers|clients|accounts)", "tenure", r"recent\s+sign[- ]?ups",
        r"(?:clientes|usuarios)\s+(?:nuevos|antiguos|novos|antigos)", "nuevos", "antiguos", "novos", "antigos",
        "nouveaux", "anciens", r"ancienneté", "neukunden", "stammkunden", "bestandskunden", r"langjährige\w*",
        "nuovi", "vecchi", "新客户", "老客户", "新用户", "老用户", "新老", "新客", "老客"),
    "value_band": _any(
        r"(?:big|small|high|low|heavy|light)\s+(?:spenders|buyers)", "spenders?", r"spend(?:ing)?", "value bands?",
        r"high[- ]value", r"low[- ]value", r"gastan?", "gasto", r"gros\s+acheteurs", r"petits\s+acheteurs",
        r"dépens\w*", r"vielkäufer", r"umsatz\w*", r"ausgaben", r"gastam", r"spesa", "高消费", "低消费", "消费",
        "高价值", "低价值",
        # "big / small buyers" as es, pt, fr, de, it say it (E he17: "Os grandes compradores ... maior do que os
        # pequenos" went to the at-risk list), and Japanese
        r"(?:grandes|pequeñ[oa]s|pequen[oa]s)\s+(?:compradore?s|clientes|consumidore?s)",
        r"(?:grands|petits)\s+(?:clients|consommateurs)", r"(?:gro(?:ß|ss)e|kleine)\s+(?:käufer|kunden)",
        r"(?:grandi|piccoli|grossi)\s+(?:acquirenti|clienti|compratori)", "大客户", "大买家", "消費", "高額"),
    "first_category": _any(
        r"first\s+(?:purchase|order|buy)", r"started\s+with", r"primera\s+compra", r"empezaron\s+con",
        r"premier\s+achat", r"première\s+commande", r"erste[rn]?\s+(?:kauf|bestellung)", "erstkauf",
        r"primeira\s+compra", r"primo\s+acquisto", "首次购买", "首单", "第一次购买", "第一单"),
    "segment": _any("segments?", "segmentos?", "segmenté?s?", "segmenti", "分群", "细分", "客群"),
}
_RATE = _any(
    "rates?", "average", "overall", "share", "percentage", r"per\s+cent", "doing", "how many", "proportion",
    "tasa", "promedio", "taux", "moyenne", "quote", "durchschnitt", "taxa", "média", "tasso", "率", "平均", "比例",
)
CART_WORDS = _any(
    r"carts?", "baskets?", r"carrito\w*", r"cesta\w*", "panier", "paniers",
    r"warenk[öo]rb\w*", r"einkaufswagen", r"carrinhos?", r"carrello", r"carrelli", "购物车", "加购",
)

# Look-alikes: customers like a given one ("parecidos com o 1088", "ähnlich wie", "semblables à", "类似", "似た").
LOOKALIKE_WORDS = _any(
    r"similar\w*", r"look[- ]?alikes?", r"like\s+(?:user|customer|client)", r"parecid[oa]s?", r"semejantes?",
    r"semelhantes?", r"ähnlich\w*", r"semblables?", r"similaires?", r"simili", r"comme\s+(?:le\s+)?client",
    r"wie\s+(?:kunde|der\s+kunde)", "类似", "相似", "相近", "似た", "類似",
)
# What a customer will buy next: their next categories or items ("Les 4 catégories que le client 2363 achètera
# probablement ensuite", "顧客1814が次に買いそうなカテゴリは？" went to similar_cases and the at-risk list: the prior is
# blind to French and Japanese). Read only where the question names a customer (`about_next_purchase`).
NEXT_PURCHASE_WORDS = _any(
    r"buy\s+next", r"purchase\s+next", r"order\s+next", r"next\s+(?:purchase|buy|basket)",
    r"next\s+(?:\w+\s+){0,2}(?:categor\w+|items?|products?)",
    r"próxima\s+compra", r"a\s+continuación", r"em\s+seguida", r"ensuite", r"prochain\s+achat", r"prochaine\s+commande",
    r"als\s+nächstes", r"nächste[rn]?\s+(?:kauf|einkauf|bestellung)", r"prossim[oaei]\s+(?:acquist\w+|ordin\w+|categori\w+|"
    r"prodott\w+|articol\w+)", r"próxim[oa]s?\s+(?:categor\w+|produtos?|productos?|artículos?|itens)",
    "下次购买", "下次买", "接下来", "下一次买", "下一个品类", "下次会买", "次に", "次の購入", "次回",
)
# "What will they buy?" without a word for next: the future of "buy" after a word for "what" ("¿Qué comprará",
# "o que vai comprar", "Was wird ... kaufen"). A bare "vai comprar" is no such question: "O cliente 95 vai
# comprar de novo nos próximos 7 dias? Por quê?" asks whether, and why (sealed F hf15, after its run). In
# Chinese and Japanese the "what" is bound to a future "buy" too: "用户 4955 最近买了什么？" asks for the history.
_WHAT_WILL_BUY = re.compile(r"(?<!\w)(?:qué|que|quoi|was|cosa|o\s+que)\b[^?.!]{0,40}?(?:comprar[áa]n?|vai\s+comprar|"
                            r"vão\s+comprar|achèter(?:a|ont)|kaufen\s+wird|kaufen\s+werden|wird\b[^?.!]{0,30}kaufen|"
                            r"comprer(?:à|anno))|(?:会|要|将)买(?:些)?什么|何を買い?そう|何を買う", re.I)
# Why a customer is at risk, their stage: the tool that explains one customer ("lifecycle stage of user 4400 and
# what would move it" went to the history: sealed F hf16, after its run; "Por quê?" after a question about buying).
WHY_WORDS = _any(
    "why", r"what\s+would\s+move", r"(?:lifecycle\s+)?stage", r"por\s+qu[eéê]", "porquê", "pourquoi", "warum", "wieso",
    r"perch[eé]", "为什么", "為什麼", "原因", "なぜ", "どうして",
)
# What customers say: reviews, ratings, complaints, praise ("What do customers complain about?", "顾客都在抱怨什么？").
REVIEW_WORDS = _any(
    r"reviews?", r"review(?:ed|ers?)", r"complain\w*", r"complaints?", r"ratings?", r"feedback", r"praise\w*",
    r"reseñas?", r"opiniones", r"quejas?", r"quejan", r"avis", r"plaintes?", r"plaignent", r"bewertung\w*",
    r"beschwerde\w*", r"beschweren", r"rezension\w*", r"avaliaç\w+", r"reclamaç\w+", r"reclamam", r"recension\w*",
    r"lamentel\w*", "评论", "评价", "抱怨", "差评", "好评", "吐槽", "投诉", "口碑",
)
# Which side of the reviews a question asks for: complaints ("What do customers complain about most?", "差评")
# or praise ("What do reviewers love?", "好评"). The answer then quotes that side, not the majority's.
COMPLAINT_WORDS = _any(
    r"complain\w*", r"complaints?", r"problems?", r"issues?", r"negative", r"worst", r"dislik\w*", r"unhappy",
    r"quejas?", r"quejan", r"plaintes?", r"plaignent", r"beschwerde\w*", r"beschweren", r"reclamaç\w+", r"reclamam",
    r"lamentel\w*", "抱怨", "差评", "吐槽", "投诉", "不满", "问题",
)
PRAISE_WORDS = _any(
    r"prais\w*", r"lov(?:e|es|ed|ing)", r"positive", r"best", r"favou?rite\w*", r"elogi\w*", r"loben?", r"lob",
    "好评", "称赞", "喜欢", "夸",
)
# A question about who will leave, in these languages: reviews then only describe those customers.
_LEAVING = _any(
    r"churn\w*", r"at[- ]risk", r"laps\w*", r"stop\w*\s+buying", r"leav\w+", r"abandon\w*", "riesgo", "risque",
    r"risiko\w*", r"abwander\w*", "risco", "rischio", "流失", "风险",
)

# "more than 6 months", "less than 20%": a quantity, not a comparison of groups.
# In the other languages too: "länger als 90 Tage", "más de 2 años", "plus d'un an", "mais de 6 meses", "più di
# 20%" (E he14: "Kunden, die schon länger als 90 Tage dabei sind: wer springt diese Woche ab?" read "als" as a
# comparison and went to the per-group report).
_QUANTITY_RE = re.compile(r"\b(?:(?:more|less|fewer|longer|shorter|older|younger|greater|higher|lower|above|below|over|"
                          r"under)\s+than\s+(?:a|an|one|two|three|\d[\d.,]*\s*%?)|"
                          r"(?:mehr|weniger|länger|kürzer|älter|jünger)\s+als\s+(?:ein\w*|zwei|drei|\d[\d.,]*\s*%?)|"
                          r"(?:más|menos|mais|plus|moins|più|meno)\s+(?:de|d['’]|di)\s*(?:un\w*|dos|deux|dois|"
                          r"tres|trois|três|due|tre|\d[\d.,]*\s*%?))", re.I)


def compares(question: str) -> bool:
    """Whether the question sets things side by side ("vs", "than", "más que", "相比", ...).

    A tenure phrase ("with us for more than two years") and a quantity ("more than 20%") are no comparison.
    """
    text = _QUANTITY_RE.sub(" ", question)
    for phrase, _ in tenure_spans(question):
        text = text.replace(phrase, " ")
    return bool(_COMPARE.search(text))


def against_the_rest(question: str) -> bool:
    """Whether the question compares with an unnamed rest ("than the others", "los demás", "其他")."""
    return bool(_REST.search(question))


def groupings_cued(question: str) -> list[str]:
    """segment_report's `segment_by` choices the question's words point to, in a fixed order.

    A tenure phrase ("with us over a year", "customers for more than 6 months") points to tenure:
    it is a group of customers by how long they have been with the shop (time_spans.tenure_spans).
    """
    found = [name for name, pattern in _GROUPINGS.items() if pattern.search(question)]
    if tenure_spans(question) and "tenure" not in found:
        found.insert(0, "tenure")
    return found


def asks_rate(question: str) -> bool:
    """Whether the question asks for a rate or an overall figure rather than a list of people."""
    return bool(_RATE.search(question))


def about_reviews(question: str) -> bool:
    """Whether the question asks what customers say (reviews, complaints, ratings) and not who will leave."""
    return bool(REVIEW_WORDS.search(question)) and not _LEAVING.search(question)


def about_next_purchase(question: str) -> bool:
    """Whether the question asks what a customer it names will buy next, in any of the languages above; a
    question that asks why is about the customer's risk, not their next basket."""
    asks = NEXT_PURCHASE_WORDS.search(question) or _WHAT_WILL_BUY.search(question)
    return bool(asks) and not WHY_WORDS.search(question) and _names_a_customer(question)


def asks_why_of_a_customer(question: str) -> bool:
    """Whether the question asks why a customer it names is at risk, or their lifecycle stage."""
    return bool(WHY_WORDS.search(question)) and _names_a_customer(question)


def _names_a_customer(question: str) -> bool:
    return any(kind == "user" for kind, _ in referenced_ids(question))


def review_side(question: str) -> str:
    """"negative" for a question about complaints, "positive" for one about praise, "" for both or neither."""
    complaint, praise = bool(COMPLAINT_WORDS.search(question)), bool(PRAISE_WORDS.search(question))
    return "" if complaint == praise else "negative" if complaint else "positive"


def about_lookalikes(question: str) -> bool:
    """Whether the question asks for customers like a given one, in any of the languages above."""
    return bool(LOOKALIKE_WORDS.search(question))


def about_carts(question: str) -> bool:
    """Whether the question is about carts or baskets, in any of the languages above."""
    return bool(CART_WORDS.search(question))


def prefer_cued_tools(specs: dict[str, ToolSpec], ranked: list[str], question: str, named: list[str]) -> list[str]:
    """`ranked` reordered by what the cues say the question wants; otherwise the model's order stands.

    - about carts: the tool named for carts first (the at-risk list and a customer's explanation also
      take a customer, so "Was liegt im Warenkorb von Kunde 1814?" went to explain_user);
    - a comparison that names a group or a grouping ("más que los demás", "新老客户 ... 对比", "high
      spenders vs everyone else"): the tool that reports per group (`ToolSpec.groups`) first; a filter
      holds one group and cannot set it beside the rest;
    - one group named that a filter takes ("cat_household churners next month"), no comparison and no
      rate asked: the tools that list that group's customers first, ahead of the per-group report.
    """
    if about_carts(question):
        return _moved_first(ranked, [name for name in ranked if "cart" in name])
    if about_next_purchase(question) and not about_lookalikes(question):
        # The tool that predicts a customer's next purchases says "next" in its name or first sentence.
        return _moved_first(ranked, [name for name in ranked if "next" in name or
                                     "next" in specs[name].description.split(".")[0].lower()])
    if about_lookalikes(question):
        # "Clientes parecidos com o 1088" went to explain_user: the prior is blind to Portuguese, and the id
        # alone points to every tool taking a customer. The tools that find look-alikes say "similar".
        return _moved_first(ranked, [name for name in ranked if "similar" in name or
                                     "similar" in specs[name].description.split(".")[0].lower()])
    if asks_why_of_a_customer(question) and not about_reviews(question):
        # The tool that explains one customer says "why" in its first sentence.
        return _moved_first(ranked, [name for name in ranked if "explain" in name or
                                     "why" in specs[name].description.split(".")[0].lower()])
    if about_reviews(question) and not _names_a_customer(question):
        # "顾客都在抱怨什么？" went to the at-risk list: the prior is blind to Chinese, the 0.5B likes the list.
        return _moved_first(ranked, [name for name in ranked if "review" in name])
    members = _members_named(specs, named)
    if compares_groups(specs, question, named):
        return _moved_first(ranked, [name for name in ranked if specs[name].groups])
    if len(members) == 1 and not asks_rate(question):
        (member,) = members
        filters = [name for name in ranked if any(key not in ENTITY_ARGUMENTS and is_known(member)
                                                  for key, is_known in specs[name].known.items())]
        return _moved_first(ranked, filters)
    return ranked


def compares_groups(specs: dict[str, ToolSpec], question: str, named: list[str]) -> bool:
    """Whether the question sets a group it names (a member, or a grouping's words) beside others or the rest."""
    return (compares(question) or against_the_rest(question)) and \
        bool(_members_named(specs, named) or groupings_cued(question))


def _members_named(specs: dict[str, ToolSpec], named: list[str]) -> set[str]:
    """The group members the question names ("snacker", "365d+", "high"), by the tools' own checks."""
    return {member for spec in specs.values() for key in spec.groups
            for members in named_members(spec, key, named).values() for member in members}


def grouping_cued(spec: ToolSpec, key: str, question: str) -> str | None:
    """The one choice of grouping argument `key` the question's words point to, or None (none or several)."""
    choices = [c for c in groupings_cued(question) if c in (spec.groups.get(key) or {})]
    return choices[0] if len(choices) == 1 else None
