"""The tools the agent calls: typed functions whose Google-style docstrings are their schemas.

The package, by job:
- `context.py`: the ToolContext the tools read, ToolError, the `@tool` mark, `bind_tool` (argument
  checks, structured errors, JSON results, audit log) and the id checks (`checks_ids`, `known_values`);
- `reads.py`: reads the tools share (events as of the cutoff, scores, the active population, spend);
- `users.py`: at-risk users, explanations, histories, next actions, segments;
- `memory.py`: similar past cases (Chroma) and review summaries;
- `carts.py`: open carts (added to cart, not bought since), by customer and by item.
Imports run one way: context <- reads <- users, memory, carts <- this file.

Usage:
    from tools.catalog import ToolContext, build_tools
    tools = build_tools(ToolContext(store=store, predictor=predictor, cases=cases))
    by_name = {fn.__name__: fn for fn in tools}
    by_name["at_risk_users"](horizon_days=7)  # -> JSON dict (or {"error", "hint"} the model can act on)
"""

from __future__ import annotations

from typing import Callable

from tools.catalog import carts, memory, users
from tools.catalog.context import ToolContext, ToolError, bind_tool, checks_ids, jsonable, known_values, tool

# The order the model sees them in.
TOOLS: tuple[Callable, ...] = (users.at_risk_users, users.explain_user, users.user_history, users.predict_next,
                               users.segment_report, memory.similar_cases, memory.review_summary,
                               carts.open_carts)

__all__ = ["TOOLS", "ToolContext", "ToolError", "bind_tool", "build_tools", "checks_ids", "jsonable",
           "known_values", "tool"]


def build_tools(ctx: ToolContext) -> list[Callable]:
    """The agent's tools over `ctx`, in the order the model sees them."""
    return [bind_tool(ctx, fn) for fn in TOOLS]
