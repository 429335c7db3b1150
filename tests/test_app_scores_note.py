"""The workspace says when the churn scores it serves are not the current checkpoint's.

`shopsight predictor train` without `predictor score` (or a removed checkpoint) leaves the tools serving
another checkpoint's stored scores; the tools add `scores_checkpoint_note` (tools/catalog/reads.py) and
`shopsight ask` printed it, but the Gradio banner and the Operations tab did not. A real shop, predictors
trained and scored through the real CLI, the real Workspace and the app's view functions (no server).
"""

from __future__ import annotations

import shutil

import pytest

import app
from retrained_shop import make_home, train


@pytest.fixture()
def home(tmp_path, monkeypatch):
    return make_home(tmp_path, monkeypatch)


def _views(home) -> tuple[str, str]:
    """(the banner, the Operations tab's summary under the at-risk table) of a freshly opened workspace."""
    from assistant.config import Settings
    from assistant.workspace import Workspace
    from tools.data.store import EventStore

    with EventStore(home / "shop.duckdb", read_only=True) as store:
        ws = Workspace.open(Settings.from_env(), store=store, chat_model_factory=lambda: None)
        summary = app.at_risk_view(ws, "7", "value_at_risk", "", "", 10)[3]
        return app._banner(ws), summary


def test_banner_and_operations_tab_say_whose_scores_they_serve_and_nothing_when_current(home):
    from assistant.cli import main

    first = train(home, "tiny", score=True)
    banner, summary = _views(home)
    assert "scores" not in banner and "checkpoint" not in banner, banner  # current scores: nothing to say
    assert "Scores:" not in summary and "Stages:" in summary, summary

    # Retrained, not rescored: the first checkpoint's scores are served; both views say so and how to fix it.
    second = train(home, "tiny2", score=False)
    assert second != first
    banner, summary = _views(home)
    assert banner.count("⚠ **scores**:") == 1, banner
    for text in (banner, summary):
        assert f"written by checkpoint {first}, not the current one ({second})" in text, text
        assert "run `shopsight predictor score`" in text, text
    assert "⚠ **Scores:**" in summary and "Stages:" in summary  # the table is still shown, with the warning

    # The checkpoint removed: its scores are still served, and the fix is to clear them or train again.
    shutil.rmtree(home / "models" / "predictor" / "shop")
    banner, summary = _views(home)
    assert "no predictor checkpoint is loaded now" in banner and "shopsight predictor scores --clear" in banner
    assert "shopsight predictor scores --clear" in summary, summary

    assert main(["predictor", "scores", "--clear"]) == 0
    banner, _ = _views(home)
    assert "⚠ **scores**" not in banner, banner  # nothing stored: the predictor's own problem is the fix
