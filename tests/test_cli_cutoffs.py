"""Cutoffs typed on the command line are ISO only: 01/03/1998 is refused with the fix instead of being
read silently as 3 January (pandas reads it month first, 31/03/1998 day first)."""

from __future__ import annotations

from datetime import datetime

import pytest

from assistant.cli import main
from assistant.commands.cutoffs import parse_cutoff


def test_iso_dates_and_times_are_read_as_utc():
    assert parse_cutoff("1998-03-31") == datetime(1998, 3, 31)
    assert parse_cutoff("1998-03-31", end_of_day=True) == datetime(1998, 3, 31, 23, 59, 59)
    assert parse_cutoff("2017-11-26T02:40:00") == datetime(2017, 11, 26, 2, 40)
    assert parse_cutoff("2017-11-26T02:40:00+08:00") == datetime(2017, 11, 25, 18, 40)
    assert parse_cutoff("2017-11-26 02:40Z") == datetime(2017, 11, 26, 2, 40)


@pytest.mark.parametrize("text", ["01/03/1998", "31/03/1998", "03-31-1998", "yesterday", "19980331"])
def test_ambiguous_or_non_iso_dates_are_refused_naming_the_flag(text):
    with pytest.raises(ValueError, match=rf"--cutoff '{text}' is not a date in ISO form: write YYYY-MM-DD"):
        parse_cutoff(text)


def test_impossible_date_is_refused():
    with pytest.raises(ValueError, match="not a real date/time"):
        parse_cutoff("1998-02-30")


@pytest.mark.parametrize("argv", [
    ["bench", "run", "--format", "cdnow", "--data", "x.txt", "--cutoff", "01/03/1998", "--horizon", "30d",
     "--out", "out"],
    ["cases", "build", "--cutoffs", "01/03/1998"],
    ["predictor", "train", "--cutoff", "01/03/1998"],
])
def test_commands_refuse_a_day_month_cutoff_before_reading_anything(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPSIGHT_DB", str(tmp_path / "shop.duckdb"))
    (tmp_path / "x.txt").write_text("00001 19970101  1   11.77\n")
    if argv[0] != "bench":  # these need a store to reach the cutoffs
        assert main(["data", "import", "x.txt", "--db", str(tmp_path / "shop.duckdb"), "--no-progress"]) == 0
    with pytest.raises(SystemExit, match="'01/03/1998' is not a date in ISO form"):
        main(argv)
