"""How long a shop's history is, in words, and whether it is long enough to learn churn over days.

The assistant's horizons are whole days: on a clickstream of hours (the Taobao slice of
docs/importing.md) `shopsight predictor train` refuses, so every place that would otherwise say
"train the predictor" says this instead (the tools' errors, the workspace, the CLI).
"""

from __future__ import annotations

import pandas as pd

MIN_SPAN_DAYS_FOR_HORIZONS = 2  # under this, no whole-day horizon can be learned (`predictor train` refuses)


def span_words(seconds: float) -> str:
    """A duration as people say it: '2 h 10 min', '9.0 days'."""
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:.1f} days"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def too_short_for_churn(first, last) -> str | None:
    """Why a shop whose events run from `first` to `last` has no churn model to train, or None if it could.

    The assistant's horizons are whole days; on a clickstream of hours (the Taobao slice) training
    is refused, so "train the predictor" is no advice there: this says what still answers.
    """
    if first is None or last is None:
        return None
    span = (pd.Timestamp(last) - pd.Timestamp(first)).total_seconds()
    if span >= MIN_SPAN_DAYS_FOR_HORIZONS * 86_400:
        return None
    return (f"this shop's events span {span_words(span)}: churn and purchase predictions are over whole days and "
            f"need at least {MIN_SPAN_DAYS_FOR_HORIZONS} days of events, so there is no churn model to train here; "
            "import a longer history for them (docs/importing.md). User histories and reviews "
            "answer without it")
