"""Re-importing a file (docs/contracts.md, "Re-importing a file"): all rows rejected, some rejected,
the identical file renamed, the same name with new content. Nothing is ever stored twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.data.store import EventStore

GOOD = "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,pv,1511561733\n"
BAD = "".join(f"{i},2,3,click,1511544070\n" for i in range(13))  # 13 rows, every one rejected


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / "shop.duckdb") as s:
        yield s


def write(folder: Path, name: str, content: str) -> Path:
    path = folder / name
    path.write_text(content)
    return path


def counts(store: EventStore) -> tuple[int, int, int]:
    """(events, rejected rows, import_log rows)."""
    row = store.query("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM rejected), "
                      "(SELECT count(*) FROM import_log)").iloc[0]
    return tuple(int(x) for x in row)


def test_all_rows_rejected_twice_keeps_one_set_of_rejects(store, tmp_path):
    path = write(tmp_path, "bad.csv", BAD)
    first = store.import_file(path, fmt="taobao", progress=False)
    assert (first.rows_imported, first.rows_rejected) == (0, 13)
    again = store.import_file(path, fmt="taobao", progress=False)
    assert again.replaced_imports == [first.import_id] and again.rows_rejected == 13
    assert "replaces import" in again.summary()
    assert counts(store) == (0, 13, 1)  # not 26 rejected rows
    ids = store.query("SELECT DISTINCT import_id FROM rejected")["import_id"].tolist()
    assert ids == [again.import_id] and again.import_id != first.import_id


def test_all_rejected_then_fixed_mapping_imports_and_drops_old_rejects(store, tmp_path):
    path = write(tmp_path, "clicks.csv", "user_id,item_id,category_id,behavior,timestamp\n" + BAD)
    tried = store.import_file(path, fmt="csv", mapping={"columns": {}}, progress=False)
    assert (tried.rows_imported, tried.rows_rejected) == (0, 13)
    fixed = store.import_file(path, fmt="csv", mapping={"columns": {}, "behaviors": {"click": "view"}},
                              progress=False)
    assert fixed.rows_imported == 13 and fixed.replaced_imports
    assert counts(store) == (13, 0, 1)


def test_some_rows_rejected_twice_adds_nothing(store, tmp_path):
    path = write(tmp_path, "mixed.csv", GOOD + "1,2,3,click,1511544070\n")
    first = store.import_file(path, fmt="taobao", progress=False)
    assert (first.rows_imported, first.rows_rejected) == (2, 1)
    again = store.import_file(path, fmt="taobao", progress=False)
    assert again.already_imported and again.import_id == first.import_id
    assert counts(store) == (2, 1, 1)


def test_identical_file_renamed_adds_nothing(store, tmp_path):
    store.import_file(write(tmp_path, "a.csv", GOOD), fmt="taobao", progress=False)
    renamed = store.import_file(write(tmp_path, "b.csv", GOOD), fmt="taobao", progress=False)
    assert renamed.already_imported and "already imported" in renamed.summary()
    assert counts(store) == (2, 0, 1)


def test_same_name_new_content_imports_only_new_rows(store, tmp_path):
    store.import_file(write(tmp_path, "day.csv", GOOD), fmt="taobao", progress=False)
    grown = store.import_file(write(tmp_path, "day.csv", GOOD + "2,5,6,buy,1511600000\n"), fmt="taobao",
                              progress=False)
    assert not grown.already_imported and not grown.replaced_imports
    assert (grown.rows_read, grown.rows_imported, grown.duplicates) == (3, 1, 2)
    reasons = store.query("SELECT reason FROM rejected")["reason"].tolist()
    assert reasons == ["duplicate of a row already in the store; nothing to fix"] * 2
    assert counts(store) == (3, 2, 2)
