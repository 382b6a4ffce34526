"""Intervals and relative scores (tswitch.suites.stats) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from tswitch.suites.stats import annotate, bootstrap_average, relative, tie, wilson


def test_wilson_matches_the_textbook_values():
    # Wilson (1927); e.g. 81 of 263 -> [0.2553, 0.3662] (Newcombe 1998, Table I, method 3)
    lo, hi = wilson(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(500, 1000)
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.25 / 1000), rel=0.01)  # ~normal at p = 1/2


def test_bootstrap_of_the_average_equals_resampling_items():
    rng = np.random.default_rng(1)
    acc, n = {"a": 0.8, "b": 0.55, "c": 0.95}, {"a": 300, "b": 400, "c": 200}
    items = {t: np.array([1] * round(acc[t] * n[t]) + [0] * (n[t] - round(acc[t] * n[t]))) for t in acc}
    means = [np.mean([rng.choice(items[t], n[t]).mean() for t in acc]) for _ in range(3000)]
    want = np.percentile(means, [2.5, 97.5])
    got = bootstrap_average(acc, n)
    assert got[0] == pytest.approx(want[0], abs=0.004) and got[1] == pytest.approx(want[1], abs=0.004)
    assert bootstrap_average(acc, n, seed=3) != got and bootstrap_average(acc, n) == got  # seeded, repeatable


def test_relative_scores_and_ties():
    assert relative(0.8, 0.6, 0.9) == {"normalized": pytest.approx(0.8 / 0.9), "gain_retained": pytest.approx(2 / 3)}
    assert relative(0.8, 0.9, 0.9)["gain_retained"] is None
    results = {
        "methods": {
            "pretrained": {"per_task": {"a": 0.5, "b": 0.6}, "average": 0.55},
            "individual": {"per_task": {"a": 0.9, "b": 0.8}, "average": 0.85},
            "t-switch": {"per_task": {"a": 0.88, "b": 0.8}, "average": 0.84},
        }
    }
    out = annotate(results, {"a": 1000, "b": 1000})
    rows = out["methods"]
    assert rows["pretrained"]["gain_retained"] == 0 and rows["individual"]["gain_retained"] == 1
    assert rows["t-switch"]["gain_retained"] == pytest.approx(29 / 30) and "ci" not in results["methods"]["t-switch"]
    assert rows["t-switch"]["n"] == {"a": 1000, "b": 1000} and len(rows["t-switch"]["ci"]["a"]) == 2
    assert tie(rows["t-switch"], rows["individual"]) and not tie(rows["pretrained"], rows["individual"])
