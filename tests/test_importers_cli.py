"""`shopsight data import / info / generate` through the real CLI entry point."""

from __future__ import annotations

import pytest

from assistant.cli import main

GOOD = "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n1,2,3,click,1511561733\n"


def test_import_then_info(tmp_path, capsys):
    db, src = tmp_path / "shop.duckdb", tmp_path / "UserBehavior.csv"
    src.write_text(GOOD)
    assert main(["data", "import", str(src), "--db", str(db), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "read 3 = imported 2 + rejected 1 + dropped 0" in out
    assert f"{src}:3 field 'behavior_type': unknown behavior_type 'click'" in out
    assert main(["data", "info", "--db", str(db)]) == 0
    info = capsys.readouterr().out
    assert "events" in info and "unknown behavior_type 'click'" in info
    assert main(["data", "import", str(src), "--db", str(db), "--no-progress"]) == 0
    assert "already imported" in capsys.readouterr().out


def test_import_errors_are_one_clear_message(tmp_path):
    db, src = tmp_path / "shop.duckdb", tmp_path / "x.csv"
    src.write_text("a;b;c;d\n1;2;3;4\n")
    with pytest.raises(SystemExit) as err:
        main(["data", "import", str(src), "--db", str(db), "--format", "taobao"])
    assert "nothing was written" in str(err.value) and "separated by ';'" in str(err.value)
    with pytest.raises(SystemExit, match="SOURCE_COLUMN=FIELD"):
        main(["data", "import", str(src), "--db", str(db), "--format", "csv", "--map", "a"])
    mapping = tmp_path / "m.yaml"
    mapping.write_text("columns: {a: user_id, b: ts, c: behavior, d: item_id}\ndelimiter: ';'\nts_unit: s\n"
                       "behaviors: {'3': buy}\n")
    assert main(["data", "import", str(src), "--db", str(db), "--format", "csv", "--mapping", str(mapping),
                 "--no-progress"]) == 0
    with pytest.raises(SystemExit, match="no event store"):
        main(["data", "info", "--db", str(tmp_path / "none.duckdb")])


def test_generate_small_demo_shop(tmp_path, capsys):
    pytest.importorskip("tools.data.synth")
    db = tmp_path / "shop.duckdb"
    assert main(["data", "generate", "--users", "40", "--seed", "1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "events" in out and "rejected 0" in out
