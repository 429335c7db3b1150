"""Customer values saved by `predictor score` are read by the tools only for exactly the events,
cutoff and code they were fitted on (tools/predictor/value_cache.py), on a real DuckDB store."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from assistant.commands.predictor import _save_customer_values
from test_catalog import CUTOFF, _frames  # tests/ is on sys.path (rootdir-relative imports)
from tools.catalog import ToolContext
from tools.catalog.reads import VALUE_HORIZON_DAYS, customer_value
from tools.data.store import EventStore
from tools.predictor import value_cache


@pytest.fixture()
def store(tmp_path):
    s = EventStore(tmp_path / "shop.duckdb")
    s.import_frames("test", **_frames())
    yield s
    s.close()


def _marked(frame: pd.DataFrame) -> pd.DataFrame:
    marked = frame.copy()
    marked["expected_value"] = 1234.5  # no fit gives this: seeing it proves the saved copy was read
    return marked


def _tool_values(store) -> tuple[pd.DataFrame, dict]:
    return customer_value(ToolContext(store=store, predictor=None, cases=None, reviews=None, cutoff=CUTOFF))


def test_score_saves_the_fit_the_tools_then_read_instead_of_refitting(store):
    fitted, notes = _tool_values(store)  # nothing saved yet: the tools fit it themselves
    _save_customer_values(store, CUTOFF, quiet=True)
    saved, saved_notes = value_cache.load_values(store, CUTOFF, VALUE_HORIZON_DAYS)
    assert saved_notes["model"] == notes["model"]
    pd.testing.assert_frame_equal(saved.set_index("user_id"), fitted, check_like=True)

    value_cache.save_values(store, CUTOFF, VALUE_HORIZON_DAYS, _marked(saved), saved_notes)
    read, _ = _tool_values(store)
    assert (read["expected_value"] == 1234.5).all()


def test_new_events_another_cutoff_or_horizon_never_serve_an_old_value(store):
    frame, notes = _tool_values(store)
    value_cache.save_values(store, CUTOFF, VALUE_HORIZON_DAYS, _marked(frame.reset_index()), notes)
    assert value_cache.load_values(store, CUTOFF - timedelta(days=1), VALUE_HORIZON_DAYS) is None
    assert value_cache.load_values(store, CUTOFF, 30) is None

    # One more purchase up to the cutoff: another key, so the tools fit again (no 1234.5 any more).
    late = pd.DataFrame([("u01", CUTOFF - timedelta(hours=1), "buy", "i1", "c1", 1, 9.0)],
                        columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])
    store.import_frames("late order", events=late)
    assert value_cache.load_values(store, CUTOFF, VALUE_HORIZON_DAYS) is None
    refit, _ = _tool_values(store)
    assert not (refit["expected_value"] == 1234.5).any()


def test_a_damaged_copy_is_refitted_and_an_in_memory_store_saves_nothing(store, tmp_path):
    frame, notes = _tool_values(store)
    table = value_cache.save_values(store, CUTOFF, VALUE_HORIZON_DAYS, frame.reset_index(), notes)
    table.write_bytes(b"not parquet")
    assert value_cache.load_values(store, CUTOFF, VALUE_HORIZON_DAYS) is None
    assert not list(table.parent.glob("*.partial"))  # writes are atomic: no half file left behind

    memory = EventStore(":memory:")
    try:
        memory.import_frames("test", **_frames())
        assert value_cache.save_values(memory, CUTOFF, VALUE_HORIZON_DAYS, frame.reset_index(), notes) is None
        assert value_cache.load_values(memory, CUTOFF, VALUE_HORIZON_DAYS) is None
    finally:
        memory.close()
