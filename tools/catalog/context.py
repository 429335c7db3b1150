"""What every tool shares: the ToolContext it reads, the ToolError it raises, and the wrapper.

A tool is a module-level function `name(ctx, ...)` marked with `@tool` (ids it takes are checked
with `@checks_ids`); `bind_tool(ctx, fn)` turns it into the callable the agent sees, so that
- model-caused errors (unknown id, out-of-range horizon, bad enum, wrong argument names) come
  back as `{"error": ..., "hint": ...}` the model can act on, never as an exception;
- integer-looking strings are accepted for int arguments (small models write "7");
- results are plain JSON (no numpy scalars);
- every call is appended to an audit log (JSON lines under the home folder).
Errors in our own code still raise (the agent's error policy: those are bugs, not model mistakes).

Usage:
    @checks_ids(user_id=is_known_user)
    @tool
    def user_history(ctx: ToolContext, user_id: str, last_n: int = 10) -> dict: ...

    history = bind_tool(ctx, user_history)  # history(user_id="42") -> JSON dict, audited
"""

from __future__ import annotations

import functools
import inspect
import json
import time
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tools import paths
from tools.catalog.money import DEFAULT_CURRENCY, check_currency
from tools.data.pii import mask_pii
from tools.data.schema import StoreError
from tools.jobs import not_ready_for_tool
from tools.predictor.data import PredictorError


class ToolError(Exception):
    """A tool call the model can fix: becomes `{"error": message, "hint": hint}`."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class ToolContext:
    """What the tool functions read. Everything is read-only; caches live for the context's life.

    Attributes:
        store: the EventStore.
        predictor: a loaded Predictor, or None (tools that need it say how to train one).
        cases: the CaseMemory, or None (similar_cases says how to build it).
        reviews: a ReviewAnalyzer, or None (trained on the store's ratings on first use).
        cutoff: "now" for the shop (naive UTC): nothing after it is read.
        audit_path: JSON-lines audit log; default <home>/audit/tool_calls.jsonl.
        currency: the shop's ISO 4217 currency code; money in results is in it.

    To add what every tool may read (a readiness check, a setting), add a field with a default
    and, if it needs checking, a line in `__post_init__`.
    """

    store: Any
    predictor: Any = None
    cases: Any = None
    reviews: Any = None
    cutoff: datetime | None = None
    audit_path: Path | None = None
    currency: str = DEFAULT_CURRENCY
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.currency = check_currency(self.currency)
        if self.cutoff is None:
            # Default "now": the last event of the store, so the demo shop answers as of its end.
            _, last = self.store.time_span()
            if last is None:
                raise StoreError("the event store is empty: import data first (shopsight demo / shopsight data import)")
            self.cutoff = pd.Timestamp(last).to_pydatetime()
        self.cutoff = pd.Timestamp(self.cutoff).tz_localize(None).to_pydatetime() \
            if pd.Timestamp(self.cutoff).tzinfo else pd.Timestamp(self.cutoff).to_pydatetime()
        if self.audit_path is None:
            self.audit_path = paths.shopsight_home() / "audit" / "tool_calls.jsonl"


def jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars, timestamps and NaN converted."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if np.isnan(v) else v
    if isinstance(value, (pd.Timestamp, datetime)):
        return pd.Timestamp(value).isoformat()
    if value is None or isinstance(value, (str, int)):
        return value
    if value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Accept "7" for an int and "0.5" for a float; refuse what cannot be read."""
    target = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional[X] -> X
        target = next(a for a in typing.get_args(hint) if a is not type(None))
    if value is None:
        return None
    if target is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        raise ToolError(f"argument {name}={value!r} is not a whole number", f"pass {name} as an integer, e.g. 7")
    if target is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ToolError(f"argument {name}={value!r} is not a number", f"pass {name} as a number") from None
    if target is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # ids written as numbers
    if typing.get_origin(target) is typing.Literal and value not in typing.get_args(target):
        choices = ", ".join(map(repr, typing.get_args(target)))
        raise ToolError(f"argument {name}={value!r} is not one of the allowed values", f"use one of {choices}")
    return value


def _audit(ctx: ToolContext, record: dict) -> None:
    path = Path(ctx.audit_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(jsonable(record), ensure_ascii=False) + "\n")


def tool(func: Callable) -> Callable:
    """Mark a module-level function `func(ctx, ...)` as a tool; `bind_tool` gives the agent its callable.

    The function stays importable and callable as it is (`at_risk_users(ctx, horizon_days=7)`),
    unchecked; the agent only ever sees the bound form.
    """
    func.is_tool = True
    return func


def bind_tool(ctx: ToolContext, func: Callable) -> Callable:
    """`func(ctx, ...)` as the agent's tool over `ctx`: argument checks, structured errors, JSON, audit log.

    The result has `func`'s name, docstring and signature without `ctx` (what
    `transformers.utils.get_json_schema` reads), and the id checks registered with `checks_ids`
    bound to `ctx` as `known_values`.
    """
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func)
    first = next(iter(sig.parameters))
    if first != "ctx":
        raise TypeError(f"tool {func.__name__} must take ctx as its first argument, not {first!r}")
    shown = sig.replace(parameters=list(sig.parameters.values())[1:])

    def call(*args: Any, **kwargs: Any) -> dict:
        t0 = time.perf_counter()
        # Free-text arguments may carry what a user pasted: the log keeps them PII-masked.
        logged = {k: mask_pii(v)[0] if isinstance(v, str) else v for k, v in kwargs.items()}
        record: dict = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                        "tool": func.__name__, "arguments": logged or list(args), "as_of": ctx.cutoff}
        try:
            try:
                bound = shown.bind(*args, **kwargs)
            except TypeError as exc:
                raise ToolError(f"bad arguments for {func.__name__}: {exc}",
                                f"valid arguments: {', '.join(shown.parameters)}") from None
            for name, value in list(bound.arguments.items()):
                bound.arguments[name] = _coerce(name, value, hints.get(name))
            result = jsonable(func(ctx, *bound.args, **bound.kwargs))
        except ToolError as exc:
            # A part `shopsight demo` is still building answers "not ready yet: ..., 40 %" (tools/jobs.py).
            result = not_ready_for_tool(func.__name__) or {"error": str(exc), "hint": exc.hint}
        except (StoreError, PredictorError) as exc:  # unknown ids and windows, from the store or the model
            result = {"error": str(exc), "hint": "check the id; at_risk_users or user_history list valid ids"}
        except Exception as exc:  # our bug: logged, then raised (the agent's error policy)
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                          ms=round(1e3 * (time.perf_counter() - t0), 1))
            _audit(ctx, record)
            raise
        record.update(ok="error" not in result, error=result.get("error"),
                      ms=round(1e3 * (time.perf_counter() - t0), 1))
        _audit(ctx, record)
        return result

    call.__name__ = call.__qualname__ = func.__name__
    call.__doc__ = func.__doc__
    call.__module__ = func.__module__
    call.__signature__ = shown
    call.__annotations__ = {k: v for k, v in hints.items() if k != "ctx"}
    checks = getattr(func, "id_checks", None) or {}
    if checks:
        known_values(call, **{arg: functools.partial(_check_in_store, check, ctx) for arg, check in checks.items()})
    groups = getattr(func, "group_checks", None) or {}
    if groups:
        call.group_members = {arg: {choice: functools.partial(_check_in_store, check, ctx)
                                    for choice, check in by_choice.items()} for arg, by_choice in groups.items()}
    return call


def _check_in_store(check: Callable[[ToolContext, str], bool], ctx: ToolContext, value: str) -> bool:
    """`check(ctx, value)`, or True where the context has no store (schemas only): it cannot tell, so it refuses nothing."""
    return True if ctx.store is None else check(ctx, value)


def checks_ids(**checks: Callable[[ToolContext, str], bool]) -> Callable[[Callable], Callable]:
    """Register read-only id checks `check(ctx, value) -> bool` on a tool; `bind_tool` binds them."""

    def mark(func: Callable) -> Callable:
        func.id_checks = checks
        return func

    return mark


def groups_named_by(**choices: dict[str, Callable[[ToolContext, str], bool]]) -> Callable[[Callable], Callable]:
    """Register, for a closed-choice argument that picks a grouping, how each grouping's members are named.

    `@groups_named_by(segment_by={"segment": is_known_segment, ...})`: a question naming "home_cook"
    names a member of the grouping "segment". `bind_tool` binds the read-only checks to the context as
    the callable's `group_members` ({argument: {choice: check(value) -> bool}}); the agent reads them
    (assistant/agent/tool_specs.py `named_grouping`).
    """

    def mark(func: Callable) -> Callable:
        func.group_checks = choices
        return func

    return mark


def known_values(fn: Callable, **checks: Callable[[str], bool]) -> Callable:
    """Attach read-only checks "does this value name a real id of this argument's kind?" to a tool.

    The agent runs them on a call the model wrote before running it, so an id put in the wrong
    slot (a category as item_id, a description as user_id) is moved or dropped instead of
    failing the call; assistant.agent.tool_specs.check_known reads them as `fn.known_values`.
    """
    fn.known_values = checks
    return fn
