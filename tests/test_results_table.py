"""demos/results_table.py: the README's suite tables, rendered from results.json."""

from __future__ import annotations

import importlib


def test_build_time_says_what_an_earlier_run_or_the_cache_supplied():
    build_time = importlib.import_module("demos.results_table")._build_time
    assert build_time({"seconds": 3720.0, "resumed_stages": 0, "finetunes_reused": 0}) == "62 min"
    assert build_time({"seconds": 2391.5, "resumed_stages": 0, "finetunes_reused": 8}) == (
        "40 min; 8 fine-tunes read from the cache"
    )
    assert build_time({"seconds": 2712.8, "resumed_stages": 56, "stage_seconds": 10800.0}) == (
        "this run 45 min; 56 stages reused from earlier runs, 180 min of stages in all"
    )
