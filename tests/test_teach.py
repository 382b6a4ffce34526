"""tswitch.teach: parsing and checking a visitor's lines, the split, Wilson intervals, the live-task
store and the fine-tune line, and one real (short) teach run with its export read back by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from tswitch.teach import data as teach_data
from tswitch.teach.accuracy import Accuracy, wilson_interval
from tswitch.teach.data import TeachError, check_name, parse_csv, parse_lines, split_held_back
from tswitch.teach.store import LiveTasks, OneAtATime


def lines(per_class: dict[str, int]) -> str:
    return "\n".join(f"{label}\t{label} sentence number {i}" for label, n in per_class.items() for i in range(n))


# -- parsing and checks -------------------------------------------------------------------------
def test_parse_lines_keeps_order_and_drops_repeats_within_a_label():
    text = lines({"cats": 5, "dogs": 6}) + "\n\ncats\tcats sentence number 0\n"
    data = parse_lines(text)
    assert data.labels == ("cats", "dogs")
    assert data.counts() == {"cats": 5, "dogs": 6}
    assert data.dropped_repeats == 1
    assert data.texts[0] == "cats sentence number 0" and data.targets.dtype == np.int64


def test_parse_csv_with_header_quotes_and_bom():
    body = "label,text\n" + "\n".join(f'{c},"a, quoted {c} line {i}"' for c in ("x", "y") for i in range(5))
    data = parse_csv(("\ufeff" + body).encode("utf-8"))
    assert data.labels == ("x", "y") and len(data) == 10 and data.texts[0] == "a, quoted x line 0"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no labelled lines"),
        (lines({"only": 8}), "only one class"),
        (lines({"a": 5, "b": 4}), "class 'b' has 4 distinct example(s); each class needs 5"),
        (lines({"a": 5, "b": 5}) + "\nb\t   ", "has an empty text"),
        (lines({"a": 5, "b": 5}) + "\n\tsome text", "has an empty label"),
        (lines({"a": 5, "b": 5}) + "\nb\t" + "x" * 1001, "is longer than 1,000 characters"),
        (lines({f"c{i}": 5 for i in range(21)}), "21 classes; at most 20"),
        (lines({"a": 1001, "b": 1000}), "2,001 lines; at most 2,000"),
        (lines({"a": 5, "b": 5}) + "\nb\ta sentence number 3", "is labelled both 'a' and 'b'"),
        ("a text without a tab", "has no TAB"),
    ],
)
def test_bad_pasted_lines_get_one_line(value, message):
    with pytest.raises(TeachError) as info:
        parse_lines(value)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_files():
    with pytest.raises(TeachError, match="not UTF-8"):
        parse_csv("label,text\na,caf\xe9\n".encode("latin-1"))
    with pytest.raises(TeachError, match="two: label,text"):
        parse_csv(b"a,b,c\n")
    with pytest.raises(TeachError, match="larger than"):
        parse_csv(b"a" * (teach_data.MAX_FILE_BYTES + 1))


def test_check_name():
    assert check_name(" My-Task_2 ") == "my-task_2"
    for bad in ("", "-x", "a b", "x" * 33, None, "../etc"):
        with pytest.raises(TeachError):
            check_name(bad)
    with pytest.raises(TeachError, match="already has"):
        check_name("bbc-topic", ["bbc-topic"])


def test_split_held_back_is_stratified_disjoint_and_capped():
    data = parse_lines(lines({"a": 5, "b": 40, "c": 300}))
    train, held = split_held_back(data)
    assert set(train.texts).isdisjoint(held.texts) and len(train) + len(held) == len(data)
    assert held.counts() == {"a": 1, "b": 8, "c": 60}
    assert min(train.counts().values()) >= teach_data.MIN_PER_CLASS - 1
    _, capped = split_held_back(data, most=10)
    assert len(capped) == 10 and min(capped.counts().values()) >= 1
    assert split_held_back(data)[1].texts == held.texts  # deterministic


def test_examples_are_real_labelled_sets_with_a_licence():
    names = teach_data.example_names()
    assert len(names) >= 2
    for name in names:
        doc = teach_data.load_example(name)
        assert doc["license"] and doc["source"]
        parsed = parse_lines(teach_data.example_lines(name))
        assert len(parsed.labels) >= 2 and len(parsed) == len(doc["rows"])


# -- Wilson intervals ----------------------------------------------------------------------------
def test_wilson_interval_matches_known_values_and_a_slow_reference():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 0) == (0.0, 1.0)
    # slow reference: the interval is the set of p whose score test does not reject k/n
    k, n = 37, 51
    grid = np.linspace(0, 1, 200_001)
    inside = grid[np.abs(k / n - grid) <= 1.959963984540054 * np.sqrt(grid * (1 - grid) / n)]
    assert wilson_interval(k, n) == pytest.approx((inside.min(), inside.max()), abs=1e-5)
    assert Accuracy(3, 4).as_dict()["accuracy"] == 0.75


# -- live tasks and the line -----------------------------------------------------------------------
class FakeTask:
    def __init__(self, name: str, nbytes: int = 10, suite: str = "s"):
        self.name, self.nbytes, self.suite = name, nbytes, suite


def test_live_tasks_are_per_visitor_capped_and_evicted_with_a_message():
    store = LiveTasks(max_tasks=3, max_bytes=100, per_visitor=2)
    a, b = store.new_visitor(), store.new_visitor()
    assert a != b
    store.add(a, FakeTask("t1"))
    assert [t.name for t in store.tasks(a)] == ["t1"] and store.tasks(b) == []
    with pytest.raises(TeachError, match="no task 't1'"):
        store.get(b, "t1")
    store.add(a, FakeTask("t2"))
    assert store.add(a, FakeTask("t3")) == ["t1"]  # the visitor's own oldest
    with pytest.raises(TeachError, match="evicted"):
        store.get(a, "t1")
    assert store.evicted(a) == ["t1"] and store.evicted(a) == []
    store.add(b, FakeTask("u1"))
    store.get(a, "t2")  # t2 is now more recent than t3
    assert store.add(b, FakeTask("u2")) == ["t3"]  # over max_tasks: least recently used of anyone
    assert len(store) == 3
    store.add(b, FakeTask("big", nbytes=95))  # over max_bytes
    assert store.nbytes() <= 100 and store.tasks(b)[-1].name == "big"


def test_one_at_a_time_reports_places_and_leaves_on_cancel():
    line = OneAtATime()
    places: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def first():
        with line.turn():
            started.set()
            release.wait(5)

    worker = threading.Thread(target=first)
    worker.start()
    started.wait(5)
    flag = {"cancel": False}

    def second():
        try:
            with line.turn(on_wait=places.append, cancelled=lambda: flag["cancel"]):
                pass
        except TeachError:
            places.append(-1)

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.2)
    assert line.waiting() == 2 and places and places[0] == 1
    flag["cancel"] = True
    waiter.join(5)
    assert places[-1] == -1 and line.waiting() == 1
    release.set()
    worker.join(5)
    assert line.waiting() == 0
    with line.turn() as waited:
        assert waited < 1


# -- one real run ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_teach_a_bundled_example_then_route_export_and_inspect(tmp_path):
    from test_app import app_suites

    from tswitch.app import catalogue
    from tswitch.teach import export, serve
    from tswitch.teach.run import TeachConfig, teach

    suite = catalogue.runtime(app_suites()["text"])
    data = parse_lines(teach_data.example_lines("chat-small-talk"))
    phases = []
    config = TeachConfig(steps=2, exemplars=20, template_lines=30)
    task = teach(suite, data, "small-talk", config, progress=lambda phase, f, _: phases.append((phase, f)))
    summary = task.summary()
    assert [p for p, _ in phases][0] == "head" and phases[-1] == ("done", 1.0)
    assert summary["fine_tune"]["steps"] == 2 and summary["fine_tune"]["stopped"] == "steps"
    for method in ("pretrained", "individual", "t-switch"):
        acc = summary["accuracy"][method]
        assert acc["total"] == summary["held_back_lines"] and acc["ci95"][0] <= acc["accuracy"] <= acc["ci95"][1]
    assert 0 < summary["switch"]["density"] < 1 and summary["switch"]["bytes"] < summary["switch"]["float32_bytes"]
    assert suite.task_names == list(catalogue.get(suite.name).task_names)  # the suite itself is unchanged

    routed = serve.route(suite, [task], data.texts[0])
    assert set(routed["weights"]) == {*suite.task_names, "small-talk"}
    assert sum(routed["votes"].values()) == routed["k"]
    assert next(iter(routed["prediction"])) in (
        task.head.labels if routed["routed_task"] == "small-talk" else suite.heads[routed["routed_task"]].labels
    )

    path = export.export_zip(suite, task, str(tmp_path))
    with zipfile.ZipFile(path) as z:
        z.extractall(tmp_path / "x")
    out = tmp_path / "x"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    run = subprocess.run(
        [sys.executable, "-m", "tswitch", "inspect", "--json", str(out / "small-talk.tsw")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert [t["name"] for t in report["tasks"]] == ["small-talk"]
    assert report["tasks"][0]["labels"] == list(data.labels)
    routed_cli = subprocess.run(
        [sys.executable, "-m", "tswitch", "route", "--suite", str(out / "suite"), "--text", data.texts[0], "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert routed_cli.returncode == 0, routed_cli.stderr
    assert "small-talk" in json.loads(routed_cli.stdout)["weights"]
    fresh = tmp_path / "fresh.tsw"  # a copy of the suite's pack, extended the CLI's way
    with open(suite.file(suite.manifest.pack), "rb") as f:
        fresh.write_bytes(f.read())
    added = subprocess.run(
        [sys.executable, "-m", "tswitch", "add-task", str(fresh), "--switches", str(out / "small-talk.tsw")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    assert (
        "small-talk"
        in subprocess.run(
            [sys.executable, "-m", "tswitch", "inspect", str(fresh)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        ).stdout
    )
    from tswitch.routing import KNNRouter

    exemplars = KNNRouter.load(str(out / "small-talk-exemplars.safetensors"))
    assert exemplars.task_names == ("small-talk",) and exemplars.num_exemplars == 20


def test_add_tasks_from_copies_stored_switches_between_packs_of_one_base(tmp_path, capsys):
    import torch

    from tswitch.cli import main
    from tswitch.codec.container import PackError
    from tswitch.core.task_vector import TaskVector
    from tswitch.pack import SwitchPack, add_tasks_from, create_pack, encode_task, tensor_specs

    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(7, 9, generator=g), "b": torch.randn(9, generator=g)}

    def task(name: str, shape_of=base):
        tau = TaskVector({k: torch.randn(v.shape, generator=g) for k, v in shape_of.items()})
        return encode_task(name, tau, tensor_specs(shape_of), 0.5)

    suite, taught, copy = (str(tmp_path / f) for f in ("suite.tsw", "taught.tsw", "copy.tsw"))
    create_pack(suite, base, [task("one")])
    create_pack(taught, base, [task("two"), task("three")])
    create_pack(copy, base, [task("one")])
    header = add_tasks_from(suite, taught, ["three"])
    assert [t.name for t in header.tasks] == ["one", "three"]
    for name in ("w", "b"):
        assert torch.equal(SwitchPack(suite).task_vector("three")[name], SwitchPack(taught).task_vector("three")[name])
    with pytest.raises(ValueError, match="already in"):
        add_tasks_from(suite, taught, ["three"])
    other = str(tmp_path / "other.tsw")
    create_pack(other, {"w": torch.zeros(7, 9), "b": torch.zeros(9)}, [task("four")])
    with pytest.raises(PackError, match="another base model"):
        add_tasks_from(suite, other)
    assert main(["add-task", copy, "--switches", taught]) == 0
    assert [t.name for t in SwitchPack(copy).header.tasks] == ["one", "two", "three"]
    assert main(["add-task", copy, "--switches", taught, "--alpha", "0.5"]) == 2
    assert "--switches copies stored switches" in capsys.readouterr().err
