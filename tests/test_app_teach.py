"""The *Teach a new task* and *Guided tour* views: callbacks as plain functions, then the ``teach``,
``teach_predict`` and ``teach_download`` endpoints over HTTP with gradio_client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch
from test_app import ROOT, app_suites

from tswitch.app import callbacks, tour
from tswitch.app import teach as app_teach
from tswitch.teach.data import example_lines
from tswitch.teach.run import TeachConfig

SHORT = TeachConfig(time_cap=10.0, exemplars=30, template_lines=30)  # a few steps: the path, not the accuracy
BAD_INPUTS = [
    ("a\tone\na\ttwo\na\tthree\na\tfour\na\tfive", None, "only one class"),
    ("\n".join([f"a\tline {i}" for i in range(5)] + [f"b\tother {i}" for i in range(3)]), None, "needs 5"),
    ("\n".join([f"a\tline {i}" for i in range(5)] + [f"b\tother {i}" for i in range(5)] + ["b\t  "]), None, "empty"),
    (
        "\n".join([f"a\tline {i}" for i in range(5)] + [f"b\tother {i}" for i in range(5)] + ["b\t" + "z" * 2000]),
        None,
        "longer than",
    ),
    ("\n".join(f"c{j}\tline {j} {i}" for j in range(21) for i in range(5)), None, "at most 20"),
    (
        "\n".join([f"a\tline {i}" for i in range(5)] + [f"b\tother {i}" for i in range(5)] + ["b\tline 1"]),
        None,
        "labelled both",
    ),
    (None, "latin1.csv", "not UTF-8"),
]


def one_line(result: dict) -> str:
    assert set(result) == {"error"}, result
    assert result["error"] and "\n" not in result["error"] and "Traceback" not in result["error"]
    return result["error"]


@pytest.fixture()
def latin1(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"label,text\n" + "\n".join(f"x,caf\xe9 {i}" for i in range(10)).encode("latin-1"))
    return str(path)


@pytest.mark.parametrize(("lines", "upload", "message"), BAD_INPUTS)
def test_bad_input_gets_one_line_and_nothing_happens(lines, upload, message, latin1):
    suite = app_suites()["text"]
    state = {"visitor": "bad-input-visitor"}
    result, state = app_teach.teach(suite, lines, latin1 if upload else None, None, "", state)
    assert message in one_line(result)
    assert app_teach.STORE.tasks(state["visitor"]) == []
    assert app_teach.LINE.waiting() == 0


def test_other_refusals():
    suites = app_suites()
    assert "takes images" in one_line(app_teach.teach(suites["image"], "x", None, None, "", None)[0])
    assert "unknown suite" in one_line(app_teach.teach("no-such-suite", "x", None, None, "", None)[0])
    taken = catalogue_task(suites["text"])
    lines = example_lines("chat-small-talk")
    assert "already has" in one_line(app_teach.teach(suites["text"], lines, None, None, taken, None)[0])
    assert "task name" in one_line(app_teach.teach(suites["text"], lines, None, None, "../x", None)[0])
    assert "teach a task first" in one_line(app_teach.predict(suites["text"], "hello", None, None))
    assert app_teach.download(suites["text"], "nothing", None) is None


def catalogue_task(suite: str) -> str:
    from tswitch.app import catalogue

    return catalogue.get(suite).task_names[0]


# -- the tour ------------------------------------------------------------------------------------
def test_tour_steps_read_the_suite_files():
    from tswitch.app import catalogue

    suite = app_suites()["text"]
    results = catalogue.results(suite)
    for step, name in enumerate(tour.STEPS):
        md, fig, position = tour.step_view(suite, step, [])
        assert f"Step {step + 1} of {len(tour.STEPS)}" in position and md.startswith("## ")
        assert (fig is None) == (name in ("switch", "routing") or (name == "pulse" and "pulse" not in results))
    vectors, _, _ = tour.step_view(suite, 0, [])
    assert f"{catalogue.pack_report(suite)['num_params']:,}" in vectors
    storage, _, _ = tour.step_view(suite, 3, [])
    assert f"{results['methods']['t-switch']['average']:.1%}" in storage
    assert tour.from_url({"tour": "4"}) == 3 and tour.from_url({}) is None and tour.from_url({"tour": "x"}) == 0
    assert tour.clamp(99) == len(tour.STEPS) - 1


def test_tour_switch_view_measures_a_real_tensor():
    class Task:
        name, sample_tensor = "t", "w"
        sample_tau = torch.randn(64, 96, generator=torch.Generator().manual_seed(0))

    pspar, bapprox, md = tour.switch_view(Task(), 0.9)
    kept = 64 * 96 - 2 * int(0.9 * (64 * 96 / 2))  # per sign, up to rounding
    assert pspar is not None and bapprox is not None
    assert "P-Spar keeps" in md and abs(int(md.split("keeps **")[1].split("**")[0].replace(",", "")) - kept) <= 2
    assert tour.switch_view(None, 0.9) == (None, None, "")


# -- one real run through the callbacks --------------------------------------------------------------
@pytest.mark.slow
def test_teach_show_route_download_and_isolation(monkeypatch, tmp_path):
    monkeypatch.setattr(app_teach, "CONFIG", SHORT)
    suite = app_suites()["text"]
    result, state = app_teach.teach(suite, example_lines("chat-small-talk"), None, None, "small-talk", None)
    assert "error" not in result, result
    assert result["task"] == "small-talk" and result["evicted"] == []
    status, accuracy, loss, switch_md, mask = app_teach.show_taught(result, state)
    assert f"{result['accuracy']['individual']['accuracy']:.1%}" in status
    assert f"{result['switch']['bytes']:,} B" in switch_md and accuracy is not None and loss is not None
    routed = app_teach.predict(suite, "tell me a joke", None, state)
    assert "small-talk" in routed["weights"] and sum(routed["votes"].values()) == routed["k"]
    assert app_teach.show_routed(routed)[0].startswith("Routed to")
    assert app_teach.task_choices(suite, state)[0]["choices"] == ["small-talk"]
    other = {"visitor": "another-visitor"}
    assert app_teach.task_choices(suite, other)[0]["choices"] == []
    assert "teach a task first" in one_line(app_teach.predict(suite, "tell me a joke", None, other))
    assert app_teach.download(suite, "small-talk", other) is None
    path = app_teach.download(suite, "small-talk", state)
    assert zipfile.ZipFile(path).namelist().count("small-talk.tsw") == 1
    md, fig, _ = tour.step_view(suite, 2, app_teach.STORE.tasks(state["visitor"], suite))
    assert "Move α" in md
    app_teach.forget(state)
    assert app_teach.STORE.tasks(state["visitor"]) == []
    # the app still serves the suite's own endpoint
    assert "error" not in callbacks.predict(suite, "tell me a joke", None, "auto-switch", None)


# -- over HTTP ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_gradio_client_teach_then_predict_then_download(tmp_path, latin1):
    from gradio_client import Client, handle_file
    from test_app_e2e import serve

    suite = app_suites()["text"]
    # the served app's fine-tune cap: the path, not the accuracy
    with serve(extra_env={"TSWITCH_TEACH_SECONDS": "10"}) as url:
        client = Client(url, verbose=False)
        bad = client.predict(suite, "", handle_file(latin1), None, "", api_name="/teach")
        assert "not UTF-8" in one_line(bad)
        bad = client.predict(suite, "a\tx\nb\ty", None, None, "", api_name="/teach")
        assert "needs 5" in one_line(bad)
        result = client.predict(suite, "", None, "chat-more-languages", "languages", api_name="/teach")
        assert result["task"] == "languages" and result["accuracy"]["individual"]["total"] > 0
        routed = client.predict(suite, "Доброе утро! Как дела?", api_name="/teach_predict")
        assert "languages" in routed["weights"] and routed["prediction"]
        zipped = client.predict(suite, "languages", api_name="/teach_download")
        with zipfile.ZipFile(zipped) as z:
            z.extract("languages.tsw", tmp_path)
        run = subprocess.run(
            [sys.executable, "-m", "tswitch", "inspect", "--json", str(tmp_path / "languages.tsw")],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": ROOT},
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["tasks"][0]["name"] == "languages"
        other = Client(url, verbose=False)  # another session: no task of the first
        assert "teach a task first" in one_line(other.predict(suite, "hello", api_name="/teach_predict"))
        assert "error" not in other.predict(suite, "hello there", None, "auto-switch", None, api_name="/predict")


@pytest.mark.slow
def test_cancel_stops_the_fine_tune_and_keeps_nothing():
    suite = app_suites()["text"]
    state = {"visitor": "cancelling-visitor"}
    phases = []

    def progress(fraction, desc=""):
        phases.append(desc)
        if desc.startswith("fine-tuning"):
            app_teach.cancel(state)  # what the Cancel button does, from the page's other request

    result, state = app_teach.teach(suite, example_lines("chat-small-talk"), None, None, "", state, progress)
    assert "cancelled" in one_line(result)
    assert not any(p.startswith("turning the task vector") for p in phases)
    assert app_teach.STORE.tasks(state["visitor"]) == [] and app_teach.LINE.waiting() == 0
    assert not app_teach.STORE.cancelled(state["visitor"])  # the next run starts clean
