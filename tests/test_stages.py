"""Resumable builds (:mod:`tswitch.suites.stages`): stages stored once, read back, keyed by identity."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import torch

from tswitch.suites.spec import get_suite_spec, smoke
from tswitch.suites.stages import StageCache, build_identity


def test_a_stage_is_computed_once_and_read_back_by_a_new_cache(tmp_path):
    path = str(tmp_path / "stages.json")
    calls = []

    def compute():
        calls.append(1)
        return {"per_task": {"a": 0.5}, "k": (1, 2)}

    first = StageCache(path)
    assert first.get("x", compute) == {"per_task": {"a": 0.5}, "k": [1, 2]}  # JSON both ways: a tuple is a list
    assert first.get("x", compute) == {"per_task": {"a": 0.5}, "k": [1, 2]}
    assert len(calls) == 1 and first.hits == 0  # a stage of this run is not "read back from an earlier run"
    again = StageCache(path)
    assert "x" in again and again.get("x", compute)["k"] == [1, 2]
    assert len(calls) == 1 and again.hits == 1
    assert [f for f in os.listdir(tmp_path) if f != "stages.json"] == []  # no temp file left behind


def test_a_returned_value_is_a_copy(tmp_path):
    cache = StageCache(str(tmp_path / "s.json"))
    value = cache.get("x", lambda: {"a": [1]})
    value["a"].append(2)
    assert cache.get("x", lambda: None) == {"a": [1]}


def test_corrupt_or_truncated_file_recomputes_and_is_replaced(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"x": {"average": 0.')
    cache = StageCache(str(path))
    assert len(cache) == 0 and cache.get("x", lambda: 3) == 3
    assert json.loads(path.read_text())["x"] == 3 and set(json.loads(path.read_text())) == {"x", "__seconds__"}


def test_a_failed_stage_stores_nothing(tmp_path):
    cache = StageCache(str(tmp_path / "s.json"))

    def boom():
        raise RuntimeError("killed")

    try:
        cache.get("x", boom)
    except RuntimeError:
        pass
    assert "x" not in cache and not (tmp_path / "s.json").exists()


def test_discard_forgets_everything(tmp_path):
    cache = StageCache(str(tmp_path / "s.json"))
    cache.get("x", lambda: 1)
    cache.discard()
    assert len(cache) == 0 and not (tmp_path / "s.json").exists()
    assert StageCache(str(tmp_path / "s.json")).get("x", lambda: 2) == 2


def test_identity_changes_with_the_spec_and_the_finetunes():
    spec = smoke(get_suite_spec("text-minilm"))
    base = build_identity(spec, ["a.safetensors", "b.safetensors"])
    assert base == build_identity(spec, ["a.safetensors", "b.safetensors"])
    assert base != build_identity(replace(spec, alpha_grid=(0.5,)), ["a.safetensors", "b.safetensors"])
    assert base != build_identity(spec, ["a.safetensors", "c.safetensors"])


def test_stage_generators_do_not_depend_on_which_stages_ran_before():
    from tswitch.suites.experiments import Experiments

    exps = Experiments.__new__(Experiments)  # generator() reads only the spec
    exps.spec = get_suite_spec("text-minilm")
    a = torch.rand(4, generator=exps.generator("pulse", "random", "0.5"))
    torch.rand(100, generator=exps.generator("pulse", "random", "0.3"))  # another stage draws in between
    assert torch.equal(a, torch.rand(4, generator=exps.generator("pulse", "random", "0.5")))
    assert not torch.equal(a, torch.rand(4, generator=exps.generator("pulse", "random", "0.7")))


def test_stage_seconds_add_up_over_runs_and_old_files_say_unknown(tmp_path):
    import time

    path = str(tmp_path / "stages.json")
    first = StageCache(path)
    first.get("a", lambda: time.sleep(0.05) or 1)
    again = StageCache(path)  # a resumed run: "a" read back with its time, "b" computed now
    again.get("a", lambda: 0)
    again.get("b", lambda: time.sleep(0.05) or 2)
    assert len(again) == 2 and "__seconds__" not in again
    total = again.seconds()
    assert total is not None and total >= 0.1
    with open(path, encoding="utf-8") as f:
        stored = json.load(f)
    del stored["__seconds__"]["a"]  # a stage stored before times were kept
    with open(path, "w", encoding="utf-8") as f:
        json.dump(stored, f)
    assert StageCache(path).seconds() is None
