"""Tool functions as the model sees them, and argument checking against that view.

The schema is the one `apply_chat_template(tools=[fn])` shows the model
(`transformers.utils.get_json_schema`, parsed from the Google docstring; assistant/llm/tool_schema.py
makes the same dicts without importing transformers), so what we check
is exactly what the model was told. Checking coerces the harmless slips a small model makes
("7" for 7, 7.0 for 7, "None" for null) and names the real mistakes so the model can fix them.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from assistant.agent.time_spans import UNIT_AFTER_RE, spans

_TYPE_NAMES = {"integer": "an integer", "number": "a number", "string": "a string",
               "boolean": "true or false", "array": "a list", "object": "an object"}


@dataclass
class ToolSpec:
    """One tool: the function, its JSON schema and a checker for the model's arguments.

    `known` maps an id argument to a read-only check "does this value name a real id of this
    kind?" (the tool's `known_values`, see tools.catalog.known_values); empty for other tools.
    `groups` maps a closed-choice argument that picks a grouping (segment_report's segment_by) to
    a check per choice: "does this value name a member of that grouping?" ("home_cook" is one of
    the grouping "segment"; tools.catalog.context.groups_named_by).
    """

    fn: Callable
    schema: dict
    known: dict[str, Callable[[str], bool]] = field(default_factory=dict)
    groups: dict[str, dict[str, Callable[[str], bool]]] = field(default_factory=dict)

    @classmethod
    def of(cls, fn: Callable, schema: dict) -> "ToolSpec":
        """The spec of a tool function shown with `schema`, carrying the function's id and group checks."""
        return cls(fn, schema, dict(getattr(fn, "known_values", None) or {}),
                   dict(getattr(fn, "group_members", None) or {}))

    @property
    def name(self) -> str:
        return self.schema["function"]["name"]

    @property
    def description(self) -> str:
        return self.schema["function"].get("description", "")

    @property
    def parameters(self) -> dict[str, dict]:
        return self.schema["function"].get("parameters", {}).get("properties", {})

    @property
    def required(self) -> list[str]:
        return list(self.schema["function"].get("parameters", {}).get("required", []))

    def usage(self) -> str:
        """A one-line signature for error hints: name(arg: type, ...)."""
        parts = []
        for arg, prop in self.parameters.items():
            kind = prop.get("type", "any")
            if "enum" in prop:
                kind = "|".join(repr(v) for v in prop["enum"])
            parts.append(f"{arg}: {kind}" + ("" if arg in self.required else " (optional)"))
        return f"{self.name}({', '.join(parts)})"

    def validate(self, args: dict) -> tuple[dict, str | None]:
        """Coerce `args` to the schema; returns (checked args, None) or ({}, what is wrong)."""
        unknown = [k for k in args if k not in self.parameters]
        if unknown:
            return {}, f"{self.name} has no argument {', '.join(map(repr, unknown))}"
        missing = [k for k in self.required if args.get(k) in (None, "")]
        if missing:
            return {}, f"{self.name} needs {', '.join(map(repr, missing))}"
        checked: dict[str, Any] = {}
        for key, value in args.items():
            prop = self.parameters[key]
            coerced, problem = _coerce(value, prop)
            if problem:
                return {}, f"argument {key!r} of {self.name}: {problem}"
            if coerced is None and key not in self.required:
                continue  # leave the function's default
            checked[key] = coerced
        return checked, None


def _coerce(value: Any, prop: dict) -> tuple[Any, str | None]:
    kind = prop.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if prop.get("nullable") or "null" in kinds:
            return None, None
        return None, None  # dropped for optional args; `validate` catches missing required ones
    if "integer" in kinds:
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not number.is_integer():
            return None, f"expected {_TYPE_NAMES['integer']}, got {value!r}"
        value = int(number)
    elif "number" in kinds:
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None, f"expected {_TYPE_NAMES['number']}, got {value!r}"
    elif "string" in kinds:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(int(value)) if float(value).is_integer() else str(value)
        elif not isinstance(value, str):
            return None, f"expected {_TYPE_NAMES['string']}, got {value!r}"
        value = value.strip()
    elif "boolean" in kinds and not isinstance(value, bool):
        if str(value).lower() in ("true", "false"):
            value = str(value).lower() == "true"
        else:
            return None, f"expected {_TYPE_NAMES['boolean']}, got {value!r}"
    if "enum" in prop and value not in prop["enum"]:
        return None, f"{value!r} is not one of {prop['enum']}"
    return value, None


def build_specs(tools: list[Callable]) -> dict[str, ToolSpec]:
    """name -> ToolSpec for each tool function (schema from its signature and docstring)."""
    from assistant.llm.tool_schema import function_schema as get_json_schema  # transformers' schema, without it

    specs: dict[str, ToolSpec] = {}
    for fn in tools:
        if not callable(fn) or not inspect.getdoc(fn):
            raise TypeError(f"tool {fn!r} needs a Google-style docstring: it is the schema the model sees")
        spec = ToolSpec.of(fn, get_json_schema(fn))
        if spec.name in specs:
            raise ValueError(f"two tools are named {spec.name!r}")
        specs[spec.name] = spec
    return specs


_WORD_RE = re.compile(r"[a-z0-9_]{3,}")


def ground_arguments(spec: ToolSpec, args: dict, texts: list[str],
                     user_texts: list[str] | None = None) -> tuple[dict, list[str]]:
    """Drop optional arguments whose values do not come from the conversation.

    A small model forced to continue a call's JSON tends to fill every parameter, often with
    values copied from the docstrings ("top_k": 100 from "at most 100"). An optional value is
    kept when it is a closed choice (enum, boolean) or when the user's words (with the agent's
    notes) or a trusted tool result contain it; otherwise the tool's default applies.
    An optional number (a count, a horizon) must come from the user's words (`user_texts`,
    when given): tool results are full of numbers, and "the top one" is no "k": 1. A span of
    time counts as its number of days ("this month" grounds 30), and a `*_days` argument must
    be such a span when the user gave one: in "3 customers this month", 3 is no horizon.
    Required arguments are never dropped: a wrong one comes back to the model as an error.

    Returns:
        (kept arguments, names of the dropped ones).
    """
    haystack, numbers, asked_spans = _conversation(texts)
    asked = numbers
    if user_texts is not None:
        _, asked, asked_spans = _conversation(user_texts)
    kept, dropped = {}, []
    for key, value in args.items():
        prop = spec.parameters.get(key, {})
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        pool = numbers
        if is_number:
            pool = asked_spans if key.endswith("_days") and asked_spans else asked
        if key in spec.required or "enum" in prop or isinstance(value, bool) or \
                _grounded_value(value, haystack, pool):
            kept[key] = value
        else:
            dropped.append(key)
    return kept, dropped


def check_known(spec: ToolSpec, args: dict) -> tuple[dict, list[str]]:
    """Id arguments whose values name nothing of their kind: moved to the slot they do name, or dropped.

    A small model fills every id slot it sees ("item_id": "coffee", "category_id": "coffee";
    "user_id": "loyal buyer who stopped ..."). A value that is no id of its argument's kind but
    is one of a sibling argument's kind moves there when that slot is empty or wrong; an optional
    argument left unknown is dropped (the tool's default applies). A required one stays, so the
    router passes the tool over (`required_grounded`) or the tool's error reaches the model.
    A short value holding one id of its kind with the noun the question wrote it with ("usr 2827",
    "usr_1341" joined by an underscore) is that id: passed over, "usr 2827 churn prob this month + drivers" went to the segment report.

    Returns:
        (arguments, names of the dropped ones).
    """
    args, dropped = dict(args), []
    for key, is_known in spec.known.items():
        value = args.get(key)
        if value in (None, "") or is_known(str(value)):
            continue
        words = _ID_WORD_RE.findall(str(value))
        inside = {word for word in words if is_known(word)} if len(words) <= 3 else set()
        if not inside and len(words) <= 3:  # the noun joined by an underscore ("usr_1341", "cust_3515"): C hc23
            inside = {part for word in words for part in word.split("_") if part and is_known(part)}
        if len(inside) == 1:  # the id copied with its noun ("usr 2827", "customer #1814"), no description: the id
            args[key] = inside.pop()
            continue
        for other, other_known in spec.known.items():
            if other != key and other_known(str(value)) and \
                    (args.get(other) in (None, "") or not other_known(str(args[other]))):
                args[other] = value
                break
        if key not in spec.required:
            args.pop(key)
            dropped.append(key)
    return args, dropped


def required_grounded(spec: ToolSpec, args: dict, texts: list[str]) -> bool:
    """Whether every required argument is present and comes from the conversation.

    A call to explain_user with user_id "user_id" (a parameter name copied as a value) or an id
    nobody mentioned cannot be what the user asked for: the router then tries its next tool.
    Closed choices (enum, boolean) count as grounded.
    """
    haystack, numbers, _ = _conversation(texts)
    for key in spec.required:
        value, prop = args.get(key), spec.parameters.get(key, {})
        if value in (None, ""):
            return False
        if "enum" not in prop and not isinstance(value, bool) and not _grounded_value(value, haystack, numbers):
            return False
        if key in spec.known and not spec.known[key](str(value)):
            return False  # mentioned, but no id of this kind ("dog_food_dry" as a user_id)
    return True


_ID_WORD_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?")  # "1334." ends a sentence: "1334"


def worth_decoding(specs: dict[str, ToolSpec], ranked: list[str], texts: list[str], limit: int) -> list[str]:
    """The best `limit` of `ranked` whose required ids the conversation could supply, best first.

    A tool needing a user id when no word of the conversation is one cannot be what was asked: it
    is passed over without decoding its arguments (a decode costs ~1 s on 2 cores, and the model
    then invents an id, "12345"). When no tool qualifies, the first `limit` are tried as before.
    """
    words = set(_ID_WORD_RE.findall("\n".join(texts)))

    def possible(name: str) -> bool:
        spec = specs[name]
        return all(any(spec.known[key](w) for w in words) for key in spec.required if key in spec.known)

    return [n for n in ranked if possible(n)][:limit] or ranked[:limit]


def _spans_in_days(texts: list[str]) -> set[float]:
    """Spans of time the texts name, in days: "7 days", "this week" (7), "the coming month" (30)."""
    return {float(days) for _, days in spans("\n".join(texts))}


def _conversation(texts: list[str]) -> tuple[str, set[float], set[float]]:
    """The conversation as one lower-case text, the numbers written in it (spans of time in days
    too), and those spans alone."""
    haystack = "\n".join(texts).lower()
    spans_in_days = _spans_in_days([haystack])
    # A number before a unit of time counts as its span in days only: "older than 6 months" (a tenure, no span)
    # grounds no `horizon_days` of 6 (Round 9, hd08), "2 weeks" grounds 14, not 2.
    numbers = {float(m.group(0)) for m in re.finditer(r"(?<![\w.])\d+(?:\.\d+)?", haystack)
               if not UNIT_AFTER_RE.match(haystack[m.end():])}
    return haystack, numbers | spans_in_days, spans_in_days


def _grounded_value(value: Any, haystack: str, numbers: set[float]) -> bool:
    if value is None:
        return False
    if isinstance(value, (int, float)):
        return float(value) in numbers
    text = str(value).strip().lower()
    if not text:
        return False
    if text in haystack:
        return True
    unit = re.fullmatch(r"(\d+)\s*([dwm])", text)  # "30d" for "the last 30 days" or "the past month"
    if unit:
        days = int(unit.group(1)) * {"d": 1, "w": 7, "m": 30}[unit.group(2)]
        return float(unit.group(1)) in numbers or float(days) in numbers
    words = _WORD_RE.findall(text)
    if len(words) >= 3:  # a free-text description: most of its words must be the user's, as whole words
        said = set(_WORD_RE.findall(haystack))  # "the" is no word of "they"
        return sum(w in said for w in words) >= 0.5 * len(words)
    return False


# Arguments that name one entity (a customer, a product): a question naming one is about it.
ENTITY_ARGUMENTS = ("user_id", "item_id")


def _takes(spec: ToolSpec, keys: tuple[str, ...] | None, named: list[str]) -> bool:
    return any(spec.known[key](value) for key in spec.known if keys is None or key in keys for value in named)


def prefer_named_entities(specs: dict[str, ToolSpec], ranked: list[str], named: list[str]) -> list[str]:
    """`ranked` with the tools that can take a customer or product the question names moved first.

    "why is 4955 at risk?" names customer 4955: a tool that takes no customer (at_risk_users) cannot
    answer it, however well its name scored. `named` holds the question's id candidates
    (assistant/agent/mentions.py); the tools' own read-only checks say which are real ids. The order
    inside each group stays the model's. Segments and categories do not count: several tools report
    on a group (a list of its at-risk customers, a comparison of groups, its reviews).
    """
    return _moved_first(ranked, [name for name in ranked if _takes(specs[name], ENTITY_ARGUMENTS, named)])


def _moved_first(ranked: list[str], picked: list[str]) -> list[str]:
    """`ranked` with `picked` (a sub-list, in ranked order) first; unchanged when none or the best is picked."""
    if not picked or picked[0] == ranked[0]:
        return ranked
    return picked + [name for name in ranked if name not in picked]


def named_members(spec: ToolSpec, key: str, named: list[str]) -> dict[str, set[str]]:
    """{grouping: the members of it the question names} for the grouping argument `key`.

    "home_cook vs snacker" names two members of the grouping "segment"; "the 365d+ group" one of
    "tenure". Only values the tool's own read-only checks accept count.
    """
    found: dict[str, set[str]] = {}
    for choice, is_member in (spec.groups.get(key) or {}).items():
        members = {value.lower() for value in named if is_member(value)}
        if members:
            found[choice] = members
    return found


def prefer_compared_groups(specs: dict[str, ToolSpec], ranked: list[str], named: list[str]) -> list[str]:
    """`ranked` with a tool that compares groups moved first when the question names two members of one grouping.

    "home_cook vs snacker", "high and low spenders", "0-30d against 365d+": two groups of one kind set
    side by side. A tool that takes one of them (at_risk_users' `segment`) cannot hold both; the tool
    that reports per group can. Otherwise the order stays the model's.
    """
    return _moved_first(ranked, [name for name in ranked
                                 if any(len(members) >= 2 for key in specs[name].groups
                                        for members in named_members(specs[name], key, named).values())])


def named_grouping(spec: ToolSpec, named: list[str]) -> dict[str, str]:
    """{grouping argument: the one grouping whose members the question names}.

    "is snacker churning more than health_focused?" is a comparison of shop segments
    (segment_by="segment") whatever grouping the model wrote; with members of two groupings named,
    or none, the argument is left out (the model's value stands). The caller leaves alone a
    grouping the question names outright ("by tenure").
    """
    out = {}
    for key in spec.groups:
        found = named_members(spec, key, named)
        if len(found) == 1:
            (out[key],) = found
    return out


def fill_named_ids(spec: ToolSpec, args: dict, named: list[str]) -> tuple[dict, list[str]]:
    """An empty id slot filled with the one id of its kind that the question names.

    A small model forced to write a call often leaves an id slot out or fills it with an invented
    value ("category_id": "67890" for "main gripes about cat_treats?"; `check_known` then drops it).
    When the question names exactly one value the slot's read-only check accepts (a longer name
    wins over one inside it: "pasta_sauce" over "pasta"), and no sibling id slot is filled ("item_id"
    beside "category_id"), that value is the one meant.

    Returns:
        (arguments, names of the filled slots).
    """
    args, filled = dict(args), []
    for key, is_known in spec.known.items():
        if args.get(key) not in (None, "") or any(args.get(k) not in (None, "") for k in spec.known if k != key):
            continue
        found = list(dict.fromkeys(value for value in named if is_known(value)))
        found = [v for v in found if not any(v != w and v.lower() in w.lower() for w in found)]
        if len(found) == 1:
            args[key] = found[0]
            filled.append(key)
    return args, filled


def fill_time_span(spec: ToolSpec, args: dict, question: str) -> tuple[dict, list[str]]:
    """A horizon or window the question names but the call left out, filled in from the span.

    "¿... este mes?" is 30 days whatever the model wrote; when the model's horizon was dropped as
    ungrounded, or its window was a made-up date, the span the user named is what they asked for.
    Only when the question names one span (in days): with two ("churned last month, who is at risk
    this week?") the model's reading stands. `*_days` integers get the days, a `since` window "<days>d".

    Returns:
        (arguments, names of the filled ones).
    """
    days = {d for _, d in spans(question)}
    if len(days) != 1:
        return args, []
    (day_count,) = days
    args, filled = dict(args), []
    for key, prop in spec.parameters.items():
        if key in args:
            continue
        if key.endswith("_days") and prop.get("type") == "integer":
            args[key] = day_count
        elif key == "since":
            args[key] = f"{day_count}d"
        else:
            continue
        filled.append(key)
    return args, filled
