"""bench/lifecycle_eval.py's noise floor by size: what a perfectly calibrated P shows at n customers."""

from __future__ import annotations

import numpy as np

from bench.lifecycle_eval import floor_by_size


def test_the_floor_falls_as_one_over_the_root_of_the_customers():
    p = np.random.default_rng(1).uniform(0.05, 0.95, 5000)
    rows = {r["customers"]: r for r in floor_by_size(np.append(p, np.nan), sizes=(500, 2000, 8000))}
    assert rows[500]["floor (mean)"] > rows[2000]["floor (mean)"] > rows[8000]["floor (mean)"] > 0
    # four times the customers, half the floor (within the draws' noise)
    assert 1.6 < rows[500]["floor (mean)"] / rows[2000]["floor (mean)"] < 2.4
    assert 1.6 < rows[2000]["floor (mean)"] / rows[8000]["floor (mean)"] < 2.4
    assert all(r["floor (p90)"] >= r["floor (mean)"] for r in rows.values())


def test_a_certain_p_has_no_floor():
    rows = floor_by_size(np.array([0.0, 1.0]), sizes=(1000,))
    assert rows[0]["floor (mean)"] == 0.0
