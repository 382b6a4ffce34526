"""Real labelled data from packages (tswitch/suites/data/packaged.py): sizes, classes, no repeats,
determinism, and one-line errors that say what to install when the data is missing."""

from __future__ import annotations

import numpy as np
import pytest

from tswitch.suites.data import load_task

# loader -> (args, classes, items), as measured on the packaged files
CASES = {
    "imdb": ({"max_per_class": 2000}, 2, 4000),
    "rotten-tomatoes": ({}, 2, 8530),
    "wordnet-noun": ({}, 15, 9000),
    "wordnet-verb": ({}, 12, 6867),
    "fortunes": ({}, 10, 4000),
    "fashion-mnist": ({"n_per_class": 50}, 10, 500),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_packaged_tasks_load_their_real_data(name):
    args, classes, items = CASES[name]
    task = load_task(name, **args)
    assert task.num_classes == classes and len(task) == items
    assert len(set(task.ids)) == len(task)
    if isinstance(task.inputs[0], str):
        assert len(set(task.inputs)) == len(task) and all(t.strip() for t in task.inputs)  # each text once
    else:
        pixels = np.stack([np.asarray(im) for im in task.inputs]).reshape(len(task), -1)
        assert task.inputs[0].size == (28, 28) and len(np.unique(pixels, axis=0)) == len(task)
    counts = np.bincount(task.labels, minlength=classes)
    assert counts.min() > 0 and set(task.class_counts()) == set(task.label_names)
    again = load_task(name, **args)
    assert again.ids == task.ids and np.array_equal(again.labels, task.labels)  # deterministic


def test_each_task_can_hold_a_thousand_test_items_beside_train_and_validation():
    from tswitch.suites.spec import get_suite_spec

    for suite in ("text-minilm", "vision-effnet"):
        for t in get_suite_spec(suite).tasks:
            if t.loader in CASES or t.loader in ("bbc", "tweets"):
                n = len(load_task(t.loader, **t.loader_args))
                assert t.test >= 1000 and t.train + t.val + t.test <= n, (suite, t.name, n)


@pytest.mark.parametrize(
    "name, env, package",
    [
        ("fortunes", "TSWITCH_FORTUNES_DIR", "fortunes"),
        ("wordnet-noun", "TSWITCH_WORDNET_DIR", "wordnet-base"),
        ("fashion-mnist", "TSWITCH_FASHION_DIR", "dataset-fashion-mnist"),
    ],
)
def test_missing_debian_data_says_what_to_install(name, env, package, tmp_path, monkeypatch):
    monkeypatch.setenv(env, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"apt-get install {package}") as info:
        load_task(name)
    assert "\n" not in str(info.value)
