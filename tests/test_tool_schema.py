"""Tool schemas without transformers are the schemas transformers' get_json_schema makes."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal, Optional

import pytest
from transformers.utils import get_json_schema

from assistant.llm.tool_schema import function_schema
from test_agent import Shop
from tools.catalog import ToolContext, build_tools


def segment_report(segment_by: Literal["tenure", "value", 3] = "tenure", since: str | None = None,
                   weights: dict[str, float] | None = None, ids: list[str] = (), extra: Any = None,
                   flag: bool = False, top: int | float = 5) -> dict[str, Any]:
    """Compare customer segments: churn, value and size
    over a window (a description on two lines).

    Args:
        segment_by: How to group customers; "tenure" groups by months since the first order,
            "value" by spend. A second line, indented deeper.
        since (str): Start of the window, an ISO date; omit for all time.
        weights: Weight per segment (choices: [{"a": 1}])
        ids: User ids to keep.

        extra: Anything.
        flag: Whether to include lost customers (choices: [true, false])
        top: How many segments.

    Returns:
        One row per segment, with
        churn and value.
    """
    return {}


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def paint(color: Color, times: Optional[int] = None) -> None:
    """Paint something.

    Args:
        color: The color.
        times: How often.
    """


def shop_tools() -> list:
    return build_tools(ToolContext(store=None, cutoff=datetime(2026, 7, 1))) + Shop().tools()


@pytest.mark.parametrize("fn", shop_tools() + [segment_report, paint], ids=lambda fn: fn.__name__)
def test_schema_equals_transformers(fn) -> None:
    assert function_schema(fn) == get_json_schema(fn)


def test_a_tool_without_docstring_is_refused_as_transformers_refuses_it() -> None:
    def bare(x: int) -> int:
        return x

    with pytest.raises(Exception, match="docstring"):
        function_schema(bare)
