"""The "no tool fits" gate: questions that no read-only tool should answer get a plain reply first.

Before the router picks a tool, `gate(question, specs, horizons)` reads the question and decides
whether any tool call makes sense. Without it the router always picks *some* tool, so "delete
customer 42" came back as an at-risk list. It returns a `Verdict`:

    verdict = gate("Delete customer 1814 please", specs, horizons=(7, 30))
    verdict.kind    # "write": refused with no tool call
    verdict.reply   # "ShopSight's tools are read-only: ..." (prompts/agent_refusal.j2)

Kinds (each a branch of prompts/agent_refusal.j2, English or Chinese as the question is):
- "write": a request to delete, change, send or run code -- the tools only read;
- "unknown_id": a user or item id that this shop does not have -- and how to find valid ones;
- "horizon": a span beyond what the predictor scores -- and the valid horizons;
- "out_of_scope": a question about data ShopSight does not hold (profit, inventory, ad spend);
- "language": a question in neither English nor Chinese. This one does not stop the turn:
  `verdict.reply` is None and `verdict.note` is put before the English answer.
None of these read the shop's data beyond the tools' own id checks (ToolSpec.known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from assistant.agent.mentions import referenced_ids
from assistant.agent.time_spans import spans
from assistant.prompts import render

# Verbs that change the shop or its customers. Matched only as a request ("please delete",
# "can you remove", "delete ...") so that "who stopped buying" or "what changed" still pass.
_WRITE_VERBS = (r"delete|remove|erase|drop|wipe|purge|update|modify|edit|change|insert|create|refund|cancel|"
                r"ban|block|email|e-mail|notify|send|contact|unsubscribe|reset|overwrite|rename|merge|execute|"
                r"exec|eval")
_WRITE_RE = re.compile(
    rf"^\s*(?:(?:please|pls|now|ok|hey)[, ]+)?(?:(?:can|could|would|will) you\s+|i want you to\s+|go ahead and\s+)?"
    rf"(?:{_WRITE_VERBS})\b(?!\s+(?:me|us)\s+(?:who|which|what|how|why))", re.I)
_WRITE_OBJECT_RE = re.compile(
    r"\b(?:delete|remove|erase|wipe|purge|drop|refund|cancel|ban|block|modify|overwrite)\b[^.?!]{0,40}"
    r"\b(?:customers?|users?|accounts?|orders?|reviews?|items?|products?|data|records?|rows?|tables?|events?|"
    r"history|histor(?:y|ies)|scores?|database)\b", re.I)
_WRITE_ZH_RE = re.compile(r"(删除|删掉|修改|更改|更新|清空|退款|取消|发送|执行|运行|写入|插入)")
# Pasted code or a request to run some.
_CODE_RE = re.compile(
    r"```|\b(?:import\s+\w+|def\s+\w+\s*\(|exec\s*\(|eval\s*\(|os\.system|subprocess|__import__|rm\s+-rf|"
    r"drop\s+table|delete\s+from|insert\s+into|update\s+\w+\s+set|select\s+[\w*,\s]+\s+from|"
    r"curl\s+https?:|wget\s+|sudo\s+|pip\s+install)\b|<script\b", re.I)

# What ShopSight holds no data on. A question is out of scope when it asks about one of these
# and about nothing the tools cover (churn, purchases, reviews, segments, a user's history).
_OUT_OF_SCOPE_RE = re.compile(
    r"\b(?:profit(?:s|ability)?|margins?|gross margin|revenue forecast|cash ?flow|costs?|cogs|inventory|stock levels?|"
    r"warehouse|suppliers?|shipping costs?|ad spend|advertising|marketing budget|cac|roas|roi|payroll|salar(?:y|ies)|"
    r"employees?|tax(?:es)?|share price|stock price|competitors?|weather|exchange rate|traffic sources?|"
    r"seo|website speed|page load|server|passwords?|emails? addresses?|phone numbers?|home address(?:es)?)\b", re.I)
_OUT_OF_SCOPE_ZH_RE = re.compile(r"(利润|毛利|成本|库存|供应商|广告|工资|税|股价|竞争对手|天气|汇率|密码)")
_IN_SCOPE_RE = re.compile(
    r"\b(?:churn\w*|at risk|risk|leav\w+|stop\w* buying|lapse\w*|buy\w*|bought|purchas\w+|orders?|next|"
    r"reviews?|complain\w*|sentiment|aspects?|segments?|bands?|tenure|similar|cases?|history|histories|"
    r"did|recent|predict\w*|explain\w*|why|drivers?|value at risk|retain\w*|loyal|cart\w*|abandon\w*|check ?out)\b",
    re.I)
_IN_SCOPE_ZH_RE = re.compile(r"(流失|风险|购买|下单|评论|评价|分群|相似|历史|预测|为什么|原因|购物车|加购)")

_CJK_RE = re.compile(r"[\u4e00-\u9fff]")
# Scripts that are neither Latin nor Chinese, by name.
_SCRIPTS = {"Cyrillic": r"[\u0400-\u04ff]", "Arabic": r"[\u0600-\u06ff]", "Hebrew": r"[\u0590-\u05ff]",
            "Greek": r"[\u0370-\u03ff]", "Japanese": r"[\u3040-\u30ff]", "Korean": r"[\uac00-\ud7af]",
            "Thai": r"[\u0e00-\u0e7f]", "Devanagari": r"[\u0900-\u097f]"}
# Frequent words of Latin-script languages; two or more, with fewer English ones, name the language.
_STOPWORDS = {
    "Spanish": "qué cuál cuáles quién quiénes los las del por para clientes cliente usuarios usuario van semana "
               "próxima dejar comprar cómo porqué es están son una",
    "French": "quels quelles quel qui les des pour clients client utilisateurs vont semaine prochaine arrêter "
              "acheter pourquoi est sont une dans",
    "German": "welche welcher wer die der das den und für kunden kunde nutzer werden woche nächste kaufen warum "
              "ist sind eine nicht",
    "Portuguese": "quais qual quem os as dos das para clientes cliente usuários vão semana próxima comprar por "
                  "que são uma não",
    "Italian": "quali quale chi gli delle degli per clienti cliente utenti settimana prossima comprare perché "
               "sono una non",
    "Dutch": "welke wie het een voor klanten klant gebruikers week volgende kopen waarom zijn niet",
}
_ENGLISH = set("the a an which who what why how will is are of for to in this next week month users user customers "
               "customer buy churn at risk and me show list".split())


@dataclass
class Verdict:
    """What the gate decided. `reply` stops the turn (no tool call); `note` goes before the answer."""

    kind: str  # "write" | "unknown_id" | "horizon" | "out_of_scope" | "language"
    reply: str | None = None
    note: str = ""
    language: str = "en"  # the language the answer is written in: "en" or "zh"


_KANA_RE = re.compile(r"[\u3040-\u30ff]")


def answer_language(question: str) -> str:
    """"zh" when the question is written in Chinese, else "en" (every other language is answered in English).

    Japanese writes with Chinese characters too; its kana tell it apart ("顧客1814が次に買いそうなカテゴリは？"
    is no Chinese question: it is answered in English, with the note that says so).
    """
    if len(_KANA_RE.findall(question)) >= 2:
        return "en"
    return "zh" if len(_CJK_RE.findall(question)) >= 2 else "en"


def foreign_language(question: str) -> str | None:
    """The name of the language when the question is in neither English nor Chinese, else None."""
    if answer_language(question) == "zh":
        return None
    for name, pattern in _SCRIPTS.items():
        if len(re.findall(pattern, question)) >= 3:
            return name
    words = re.findall(r"[^\W\d_]+", question.lower())
    english = sum(w in _ENGLISH for w in words)
    best, hits = None, 0
    for name, vocabulary in _STOPWORDS.items():
        n = sum(w in vocabulary.split() for w in words)
        if n > hits:
            best, hits = name, n
    return best if hits >= 2 and hits > english else None


def gate(question: str, specs: dict, horizons: Iterable[int] | None = None) -> Verdict | None:
    """The verdict on `question` before any tool runs, or None when the tools should answer it.

    Args:
        question: the user's question, as typed.
        specs: the agent's tool specs (assistant/agent/tool_specs.py); their id checks
            (`spec.known`) tell a real user or item id from an unknown one.
        horizons: the churn horizons (days) the predictor scores; None skips the range check.
    """
    lang = answer_language(question)
    tools = list(specs)
    if _CODE_RE.search(question) or _WRITE_RE.search(question) or _WRITE_OBJECT_RE.search(question) \
            or (lang == "zh" and _WRITE_ZH_RE.search(question)):
        return Verdict("write", render("agent_refusal", kind="write", language=lang, tools=tools), language=lang)
    unknown = _unknown_ids(question, specs)
    if unknown:
        kind_of, value = unknown
        return Verdict("unknown_id", render("agent_refusal", kind="unknown_id", language=lang, tools=tools,
                                            id_kind=kind_of, id_value=value), language=lang)
    valid = sorted({int(h) for h in horizons or ()})
    if valid:
        too_long = [(phrase, days) for phrase, days in _ahead(question) if days > max(valid)]
        if too_long:
            phrase, days = too_long[0]
            return Verdict("horizon", render("agent_refusal", kind="horizon", language=lang, tools=tools,
                                             phrase=phrase, days=days, horizons=valid), language=lang)
    if _out_of_scope(question, lang):
        return Verdict("out_of_scope", render("agent_refusal", kind="out_of_scope", language=lang, tools=tools),
                       language=lang)
    foreign = foreign_language(question)
    if foreign:
        return Verdict("language", None, render("agent_refusal", kind="language", language="en", tools=tools,
                                                foreign=foreign), language="en")
    shortest = min((float(h) for h in horizons or ()), default=0.0)
    # Only where the horizons are whole days: a model scored at minutes-long horizons can answer "the next hour".
    too_short = _shorter_than(question, shortest) if shortest >= 1 else None
    if too_short:  # "in the next hour": answered for the shortest horizon, and the answer says so
        return Verdict("short_horizon", None, render("agent_refusal", kind="short_horizon", language=lang,
                                                     tools=tools, phrase=too_short, horizons=valid), language=lang)
    return None


# A forward span under a day: "in the next hour", "within 30 minutes", "by tomorrow".
_SUB_DAY_RE = re.compile(r"\b(?:(?:next|coming|within|in)\s+(?:the\s+)?(?:next\s+|coming\s+)?"
                         r"(?:(?:\d+|an?|one|two|three|few|couple of)\s+)?(?:hours?|hrs?|minutes?|mins?)|"
                         r"(?:by|until)?\s*tomorrow|tonight)\b|下(?:一)?个?小时|几分钟内|明天", re.I)


def _shorter_than(question: str, shortest: float) -> str | None:
    """The first forward-looking span the question names that is shorter than the shortest horizon, or None.

    "Who will stop buying in the next hour?" was answered with the 7-day list and no word that the
    horizons are whole days (new_user_trial.md Round 8); a look-back window ("carts of the last 3 days")
    is no horizon and is not read.
    """
    match = _SUB_DAY_RE.search(question)
    if match:
        return match.group(0).strip()
    return next((phrase for phrase, days in _ahead(question) if days < shortest), None)


_AHEAD_RE = re.compile(r"(?:next|coming|within|ahead|upcoming|over|in)\s+(?:the\s+)?(?:next\s+|coming\s+)?$", re.I)


def _ahead(question: str) -> list[tuple[str, int]]:
    """Spans that look forward ("the next 5000 days", "within 3 years"): a prediction horizon,
    not a look-back window ("reviews of the last 6 months")."""
    found = []
    for phrase, days in spans(question):
        start = question.find(phrase)
        before = question[max(0, start - 24):start]
        if phrase.lower().startswith(("next", "coming")) or _AHEAD_RE.search(before) \
                or question[start + len(phrase):].lstrip().lower().startswith(("ahead", "from now")):
            found.append((phrase, days))
    return found


def _out_of_scope(question: str, lang: str) -> bool:
    if lang == "zh":
        return bool(_OUT_OF_SCOPE_ZH_RE.search(question)) and not _IN_SCOPE_ZH_RE.search(question)
    return bool(_OUT_OF_SCOPE_RE.search(question)) and not _IN_SCOPE_RE.search(question)


def _unknown_ids(question: str, specs: dict) -> tuple[str, str] | None:
    """("user" | "item", id) for the first id the question names that no tool's id check knows."""
    checks: dict[str, list] = {"user": [], "item": []}
    for spec in specs.values():
        for arg, is_known in getattr(spec, "known", {}).items():
            if arg == "user_id":
                checks["user"].append(is_known)
            elif arg == "item_id":
                checks["item"].append(is_known)
    for kind, value in referenced_ids(question):  # "user 1814", "cust #42", "item P00001", "用户 1814"
        if checks[kind] and not any(known(value) for known in checks[kind]):
            return kind, value
    return None
