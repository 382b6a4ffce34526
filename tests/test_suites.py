"""Suites: a smoke build through the real code path, reproducibility of its switch-based numbers
from the written files, the CLI over it, and the committed suites routing their own examples."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tswitch.cli import main
from tswitch.suites.spec import get_suite_spec, smoke
from tswitch.suites.suite import Suite, SuiteError, list_suites

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_text(tmp_path_factory):
    from tswitch.suites.build import run_build

    out = str(tmp_path_factory.mktemp("smoke") / "text")
    with pytest.MonkeyPatch.context() as mp:  # restored when the module's tests are done
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))  # never reuse user fine-tunes
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            results = run_build(smoke(get_suite_spec("text-minilm")), out, log=lambda s: None)
            yield out, results
        finally:
            torch.set_num_threads(threads)


def test_smoke_build_writes_every_file(smoke_text):
    out, results = smoke_text
    for name in (
        "manifest.json",
        "switches.tsw",
        "heads.safetensors",
        "router.safetensors",
        "exemplars.json",
        "splits.json",
        "results.json",
    ):
        assert os.path.isfile(os.path.join(out, name)), name
    written = json.load(open(os.path.join(out, "results.json")))
    assert set(written["methods"]) >= {
        "pretrained",
        "individual",
        "weight_average",
        "task_arithmetic",
        "ties",
        "dare",
        "emr_merging",
        "tall_masks",
        "t-switch",
        "auto-switch",
    }
    for method in written["methods"].values():
        assert 0.0 <= method["average"] <= 1.0 and method["extra_bytes"] >= 0
    assert 0.0 <= written["methods"]["auto-switch"]["routing_accuracy"] <= 1.0
    assert set(written["pulse"]) == {"keep_high", "keep_low", "random", "b_approx"}
    # switches take a small fraction of the float32 task vectors
    assert written["methods"]["t-switch"]["extra_bytes"] < 0.1 * written["methods"]["individual"]["extra_bytes"]


def test_eval_reproduces_results_from_committed_files(smoke_text, capsys):
    out, results = smoke_text
    suite = Suite(out)
    for method in ("t-switch", "auto-switch"):
        fresh = suite.evaluate(method, "test")
        assert fresh["per_task"] == results["methods"][method]["per_task"]
    assert main(["eval", "--suite", out, "--method", "t-switch", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["average"] == results["methods"]["t-switch"]["average"]
    for dense in ("0", "2048"):  # switches kept packed (as the app serves them) or decoded (the default)
        assert main(["eval", "--suite", out, "--method", "auto-switch", "--json", "--dense-mib", dense]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["per_task"] == results["methods"]["auto-switch"]["per_task"]


def test_route_cli_and_errors(smoke_text, capsys):
    out, _ = smoke_text
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    example = manifest["tasks"][0]["examples"][0]
    assert main(["route", "--suite", out, "--text", example, "-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"routed_task", "weights", "neighbours", "prediction"}
    assert len(result["neighbours"]) == 3 and abs(sum(result["weights"].values()) - 1) < 1e-6
    assert len(result["prediction"]) <= 5
    for argv, needle in (
        (["route", "--suite", out, "--text", ""], "empty"),
        (["route", "--suite", out, "--text", "x", "-k", "0"], "-k"),
        (["route", "--suite", out, "--image", "nope.png"], "takes text"),
        (["route", "--suite", "no-such-suite", "--text", "x"], "unknown suite"),
        (["eval", "--suite", out, "--method", "ties"], "cannot be recomputed"),
        (["eval", "--suite", out, "--method", "t-switch", "--alpha", "0.123"], "holds switches"),
        (["eval", "--suite", out, "--method", "auto-switch", "--dense-mib", "-1"], "--dense-mib"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


def test_unknown_suite():
    with pytest.raises(SuiteError, match="unknown suite"):
        Suite.open("definitely-not-a-suite")


@pytest.mark.parametrize("name", list_suites())
def test_committed_suite_routes_its_examples(name):
    """Every committed suite loads and routes its examples (the first test items of each task, not
    picked to route well): most go to their own task, far above chance (1 / tasks), and a route is
    reproducible. text-minilm routes 83.8% of its test items right (results.json), and its sentiment
    and WordNet tasks are confusable, so not every example can be asserted to route right."""
    suite = Suite.open(name)
    right = total = 0
    for task in suite.manifest.tasks:
        items = [x if suite.modality == "text" else _image(os.path.join(suite.path, x)) for x in task.examples]
        routes = suite.route(items)
        assert [r["routed_task"] for r in routes] == [r["routed_task"] for r in suite.route(items)]
        right += sum(r["routed_task"] == task.name for r in routes)
        total += len(routes)
    assert total >= 2 * len(suite.manifest.tasks)
    assert right / total >= 0.6, (name, right, total)


def _image(path):
    from tswitch.inputs import load_image

    return load_image(path)


# -- FlexSwitch over a built suite: train, collect into results.json, serve ---------------------------
def test_a_collect_reuses_an_evaluation_only_when_every_file_it_read_is_unchanged():
    from tswitch.suites.flex_reuse import reusable

    inputs = {"pack": "p", "heads": "h", "splits": "s", "tasks": "t", "router": "r", "router_flex": "f"}
    scores = {"flexswitch": {"average": 0.5}, "knn": {"average": 0.4}, "low_rank": {"average": 0.6}}
    entry = {"inputs": dict(inputs), **scores}
    block = {"split": "test", "limit": None, "runs": {"flex-kl": entry}}
    assert set(reusable(block, "flex-kl", inputs, None)) == {"flexswitch", "knn", "low_rank"}
    assert reusable(block, "flex-kl", {**inputs, "pack": "p2"}, None) == {}  # another pack: nothing
    assert set(reusable(block, "flex-kl", {**inputs, "router": "r2"}, None)) == {"flexswitch", "low_rank"}
    assert set(reusable(block, "flex-kl", {**inputs, "router_flex": None}, None)) == {"flexswitch", "knn"}
    assert reusable(block, "flex-kl", inputs, 10) == {}  # a limited evaluation recomputes
    assert reusable({**block, "limit": 10}, "flex-kl", inputs, None) == {}  # and is never reused
    assert reusable(block, "flex-mse", inputs, None) == {}
    legacy = {"split": "test", "runs": {"flex-kl": {k: v for k, v in entry.items() if k != "inputs"}}}
    assert reusable(legacy, "flex-kl", inputs, None) == {}  # no record of its files: evaluated again
    assert reusable(None, "flex-kl", inputs, None) == {}


def test_flex_runs_collect_into_results_and_are_served(smoke_text, tmp_path, capsys):
    import shutil

    from tswitch.app import views

    out = str(tmp_path / "suite")
    shutil.copytree(smoke_text[0], out)  # same suite name: the same cached fine-tunes
    assert main(["flex", "--suite", out, "--collect"]) == 2  # nothing learned yet
    assert "no FlexSwitch runs" in capsys.readouterr().err
    assert main(["route", "--suite", out, "--text", "hello", "--method", "auto-flexswitch"]) == 2
    assert "no FlexSwitch pack" in capsys.readouterr().err
    router_file = os.path.join(out, "router-flex.safetensors")
    for extra in ([], ["--mode", "lgs"], ["--mode", "bas", "--alpha", "0.7"]):
        assert (
            main(
                ["flex", "--suite", out, "--steps", "2", "--exemplars", "8", "--eval", "none", "--threads", "1", *extra]
            )
            == 0
        ), extra
        if not extra:
            router = os.stat(router_file)
    after = os.stat(router_file)  # the Tab. XI ablations leave the main run's router as it was written
    assert (after.st_ino, after.st_mtime_ns) == (router.st_ino, router.st_mtime_ns)
    capsys.readouterr()
    assert main(["flex", "--suite", out, "--collect", "--eval", "test"]) == 0
    printed = capsys.readouterr().out
    assert "Tab. XI ablation" in printed and "flex-bas0.7-kl" in printed

    assert "(reused)" not in printed
    results = json.load(open(os.path.join(out, "results.json")))
    # a second collect reuses every evaluation whose files are unchanged, and writes the same block;
    # --no-resume evaluates again and finds the same numbers
    assert main(["flex", "--suite", out, "--collect", "--eval", "test"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("(reused)") == 3 + 3 + 1  # oracle per run, k-NN per run, low-rank for flex-kl
    assert json.load(open(os.path.join(out, "results.json")))["flex"] == results["flex"]
    assert main(["flex", "--suite", out, "--collect", "--eval", "test", "--no-resume"]) == 0
    assert "(reused)" not in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "results.json")))["flex"] == results["flex"]
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    flex = results["flex"]
    assert set(flex["runs"]) == {"flex-kl", "flex-lgs-kl", "flex-bas0.7-kl"} and flex["main"] == "flex-kl"
    assert set(flex["runs"]["flex-kl"]["inputs"]) == {"pack", "heads", "splits", "tasks", "router", "router_flex"}
    assert "router_flex" not in flex["runs"]["flex-lgs-kl"]["inputs"]  # routed by k-NN only
    assert [r["row"] for r in flex["ablation"]] == [
        "Auto-Switch",
        "+ LGS",
        "+ BAS",
        "+ LGS + BAS",
        "Auto-FlexSwitch (+ low-rank router)",
    ]
    main_run = flex["runs"]["flex-kl"]
    packed = sum(t.total_bytes for t in Suite(out).flex_pack.header.tasks)
    assert main_run["bytes"] == packed == results["methods"]["flexswitch"]["extra_bytes"]
    assert results["methods"]["auto-flexswitch"]["extra_bytes"] == packed + flex["routing"]["low_rank"]["bytes"]
    low, knn = flex["routing"]["low_rank"], flex["routing"]["knn"]
    assert low["macs_per_query"] == low["rank"] * low["dim"] + low["entries"] * low["rank"]
    assert knn["macs_per_query"] == knn["entries"] * knn["dim"] and knn["entries"] == 16  # 2 tasks x 8 exemplars
    assert manifest["flex"] == {
        "pack": "flex-kl.tsw",
        "router": {"file": "router-flex.safetensors", "k": manifest["flex"]["router"]["k"]},
    }
    assert set(flex["modules"]) == set(manifest["tasks"][i]["name"] for i in range(len(manifest["tasks"])))
    assert all(m["bits"] in (1, 2, 4, 8) for ms in flex["modules"].values() for m in ms)
    # the T-Switch suite files are untouched apart from the added blocks
    before = json.load(open(os.path.join(smoke_text[0], "results.json")))
    assert {k: v for k, v in results["methods"].items() if "flex" not in k} == before["methods"]

    suite = Suite(out)  # python -m tswitch eval recomputes what --collect wrote
    for method, key in (("flexswitch", "flexswitch"), ("auto-flexswitch", "low_rank")):
        fresh = suite.evaluate(method, "test")
        assert fresh["per_task"] == main_run[key]["per_task"], method
    routed = suite.route([manifest["tasks"][0]["examples"][0]], method="auto-flexswitch")[0]
    assert routed["routed_task"] in suite.task_names
    assert all(n["exemplar"] is None and n["centre"] is not None for n in routed["neighbours"])
    assert main(["route", "--suite", out, "--text", "hello", "--method", "auto-flexswitch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["routed_task"] in suite.task_names
    shown = views.flex_markdown(results)
    assert f"{main_run['bytes']:,}" in shown and "Tab. XI" in shown
    assert "`flex-kl` (served)" in shown and "`flex-lgs-kl` (served)" not in shown
    lo, hi = results["methods"]["flexswitch"]["average_ci"]
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in shown  # each run's accuracy carries its interval

    # a lambda chosen on validation is served; the Tab. XI rows stay at the loss's own lambda
    argv = ["flex", "--suite", out, "--steps", "2", "--exemplars", "8", "--threads", "1", "--lambda", "0.9"]
    assert main([*argv, "--eval", "test"]) == 0  # evaluated by its own command, with its router
    fitted = json.load(open(os.path.join(out, "flex-kl-lam0.9.json")))["router"]["sha256"]
    capsys.readouterr()
    assert main(["flex", "--suite", out, "--collect", "--eval", "test", "--lambda", "0.9"]) == 0
    printed = capsys.readouterr().out
    assert "[flex-kl-lam0.9] FlexSwitch" in printed and "[flex-kl-lam0.9] routed (low_rank)" in printed
    own = [line for line in printed.splitlines() if line.startswith("[flex-kl-lam0.9]")]
    assert [("(reused)" in line) for line in own] == [True, False, True], own  # oracle, k-NN, low-rank
    results = json.load(open(os.path.join(out, "results.json")))
    assert results["flex"]["runs"]["flex-kl-lam0.9"]["inputs"]["router_flex"] == fitted
    flex = results["flex"]
    assert flex["main"] == "flex-kl-lam0.9" and results["methods"]["flexswitch"]["hyper"]["lambda"] == 0.9
    assert json.load(open(os.path.join(out, "manifest.json")))["flex"]["pack"] == "flex-kl-lam0.9.tsw"
    rows = {r["row"]: r["run"] for r in flex["ablation"]}
    assert rows["+ LGS + BAS"] == rows["Auto-FlexSwitch (+ low-rank router)"] == "flex-kl"
    assert "low_rank" in flex["runs"]["flex-kl"] and "low_rank" in flex["runs"]["flex-kl-lam0.9"]
    assert (
        Suite(out).evaluate("flexswitch", "test")["per_task"]
        == flex["runs"]["flex-kl-lam0.9"]["flexswitch"]["per_task"]
    )
    # on validation: lambda-val.json gets the runs and the choice; results.json and the manifest are kept,
    # and the Auto-Switch row (results.json holds it on test only) is left out, not mixed in
    before = (open(os.path.join(out, "results.json")).read(), open(os.path.join(out, "manifest.json")).read())
    assert main(["flex", "--suite", out, "--collect", "--eval", "val"]) == 0
    assert "chosen: flex-kl" in capsys.readouterr().out
    assert (open(os.path.join(out, "results.json")).read(), open(os.path.join(out, "manifest.json")).read()) == before
    data = json.load(open(os.path.join(out, "lambda-val.json")))
    assert data["flex"]["split"] == "val" and "Auto-Switch" not in [r["row"] for r in data["flex"]["ablation"]]
    assert set(data["flex"]["runs"]) == {"flex-kl", "flex-kl-lam0.9"}  # validation chooses among these only
    choice = data["choice"]
    assert set(choice["losses"]) == {"kl"} and choice["chosen"] == choice["losses"]["kl"]["run"]
    assert choice["chosen"] in ("flex-kl", "flex-kl-lam0.9")

    # a test collect with no --loss / --lambda serves validation's choice; a served loss without
    # ablation runs (cka) keeps the Tab. XI rows at the loss that has them (kl)
    chosen = choice["chosen"]
    assert main(["flex", "--suite", out, "--collect", "--eval", "test"]) == 0
    assert f"serving {chosen}" in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "results.json")))["flex"]["main"] == chosen
    with open(os.path.join(out, "lambda-val.json"), "w") as f:  # a truncated file: one line, nothing served
        f.write('{"choice": {"cho')
    before = open(os.path.join(out, "results.json")).read()
    assert main(["flex", "--suite", out, "--collect", "--eval", "test"]) == 2
    err = capsys.readouterr().err
    assert "lambda-val.json is not a readable validation file" in err and err.count("\n") == 1, err
    assert open(os.path.join(out, "results.json")).read() == before
    argv = ["flex", "--suite", out, "--steps", "2", "--exemplars", "8", "--threads", "1", "--loss", "cka"]
    assert main([*argv, "--eval", "none"]) == 0
    assert main(["flex", "--suite", out, "--collect", "--eval", "test", "--loss", "cka"]) == 0
    capsys.readouterr()
    flex = json.load(open(os.path.join(out, "results.json")))["flex"]
    assert flex["main"] == "flex-cka" and flex["ablation_loss"] == "kl"
    rows = {r["row"]: r["run"] for r in flex["ablation"]}
    assert rows["+ LGS"] == "flex-lgs-kl" and rows["Auto-FlexSwitch (+ low-rank router)"] == "flex-kl"
    assert "low_rank" in flex["runs"]["flex-cka"] and "low_rank" in flex["runs"]["flex-kl"]
    assert json.load(open(os.path.join(out, "manifest.json")))["flex"]["pack"] == "flex-cka.tsw"


def test_flex_run_resumes_finished_tasks_and_retrains_a_corrupt_one(smoke_text, tmp_path, capsys, monkeypatch):
    import shutil

    from tswitch.pack import SwitchPack
    from tswitch.suites import flex_run

    out = str(tmp_path / "suite")
    shutil.copytree(smoke_text[0], out)
    first, second = Suite(out).task_names
    trained: list[str] = []
    real = flex_run.train_flex

    def counting(*args, task, **kwargs):
        trained.append(task)
        return real(*args, task=task, **kwargs)

    monkeypatch.setattr(flex_run, "train_flex", counting)
    argv = [
        "flex",
        "--suite",
        out,
        "--steps",
        "2",
        "--exemplars",
        "8",
        "--eval",
        "none",
        "--threads",
        "1",
        "--seed",
        "7",
    ]
    assert main([*argv, "--task", first]) == 0  # one process's share
    assert trained == [first]
    part_pack = SwitchPack(os.path.join(out, "flex-kl.tsw"))
    assert main(argv) == 0  # the run over all tasks trains only the other one
    assert trained == [first, second]
    assert "reusing the finished run" in capsys.readouterr().out
    whole = SwitchPack(os.path.join(out, "flex-kl.tsw"))
    assert whole.task(first) == part_pack.task(first)
    for name, want in part_pack.task_vector(first).items():
        assert torch.equal(whole.task_vector(first)[name], want)
    report = json.load(open(os.path.join(out, "flex-kl.json")))
    assert report["tasks"][first]["cached"] is True and "cached" not in report["tasks"][second]
    # a part cut short is never used: its task is trained again
    parts = os.path.join(os.environ["XDG_CACHE_HOME"], "tswitch", Suite(out).name, "flex")
    mine = [
        os.path.join(parts, f) for f in os.listdir(parts) if f.startswith(f"flex-kl-{first}-") and f.endswith(".tsw")
    ]
    part = max(mine, key=os.path.getmtime)  # this test's (other tests' runs use other seeds)
    data = open(part, "rb").read()
    open(part, "wb").write(data[: len(data) // 2])
    assert main(argv) == 0
    assert trained == [first, second, first]
    assert main([*argv, "--no-resume"]) == 0  # and every task when asked
    assert trained == [first, second, first, first, second]
    # other settings are another run: a new seed trains both again
    assert main([*argv[:-1], "8"]) == 0
    assert trained[-2:] == [first, second]


def test_repack_suite_keeps_accuracy_and_makes_byte_counts_match_the_packs(smoke_text, tmp_path, capsys):
    import shutil

    from tswitch.pack import SwitchPack
    from tswitch.suites.storage import repack_suite

    out, results = smoke_text
    folder = str(tmp_path / "suite")
    shutil.copytree(out, folder)
    for stem in ("switches",):  # build a SASS pack first, as the first suites were built
        assert main(["repack", os.path.join(folder, f"{stem}.tsw"), "--layout", "sass"]) == 0
    sass = json.load(open(os.path.join(folder, "results.json")))
    sass["methods"]["t-switch"]["extra_bytes"] = sum(
        t.total_bytes for t in SwitchPack(os.path.join(folder, "switches.tsw")).header.tasks
    )
    auto_before = sass["methods"]["auto-switch"]["extra_bytes"] - results["methods"]["t-switch"]["extra_bytes"]
    sass["methods"]["auto-switch"]["extra_bytes"] = sass["methods"]["t-switch"]["extra_bytes"] + auto_before
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(sass, f)
    storage = repack_suite(folder)
    again = repack_suite(folder)  # idempotent: nothing moves the second time
    assert again["packs"] == storage["packs"]
    written = json.load(open(os.path.join(folder, "results.json")))
    pack = storage["packs"]["switches"]
    assert pack["bytes"] < pack["sass_bytes"] == pack["bytes_before"] and pack["bound_bytes"] > 0
    assert written["methods"]["t-switch"]["extra_bytes"] == pack["bytes"]
    assert (
        written["methods"]["auto-switch"]["extra_bytes"] - written["methods"]["t-switch"]["extra_bytes"] == auto_before
    )
    capsys.readouterr()
    assert main(["eval", "--suite", folder, "--method", "t-switch", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["per_task"] == results["methods"]["t-switch"]["per_task"]
    assert printed["extra_bytes"] == pack["bytes"]


def test_routed_evaluation_grouped_by_weight_vector_equals_batch_by_batch(smoke_text):
    """evaluate_routed visits samples grouped by weight vector; every sample's prediction must be
    the one the engine gives it in its own batch."""
    import numpy as np

    from tswitch.suites.evaluate import evaluate_routed

    out, _ = smoke_text
    suite = Suite(out)
    auto = suite.auto_switch
    sets = suite.eval_sets("test")
    k = suite.manifest.router.k
    grouped = evaluate_routed(auto, suite.heads, sets, k)
    engine, per_task, routed_ok, n = auto.engine, {}, 0, 0
    for task, data in sets.items():
        weights, routed = auto.engine_view(auto.router.route(data.routing_features(engine.adapter), k=k))
        preds, start = [], 0
        for batch in data.batches:
            b = next(iter(batch.values())).shape[0]
            res = engine.run(batch, weights[start : start + b], routed_task=routed[start : start + b])
            preds += res.logits[task].argmax(-1).tolist()
            start += b
        per_task[task] = float(np.mean(np.asarray(preds) == data.labels))
        routed_ok += sum(int(r) == engine.tasks.index(task) for r in routed.tolist())
        n += len(data.labels)
    assert grouped["per_task"] == per_task
    assert grouped["routing_accuracy"] == routed_ok / n
    # a merging engine takes the items grouped by weight vector, a multi-tenant one batch by batch
    # (with the evaluation's decoded deltas): the same predictions either way
    from tswitch.merging import AutoSwitch, DynamicMergeEngine, PackedSwitches
    from tswitch.suites.evaluate import EVAL_DENSE_BYTES

    for strategy, dense in (
        ("merge", 0),
        ("merge", EVAL_DENSE_BYTES),
        ("tenant", EVAL_DENSE_BYTES),
        ("auto", EVAL_DENSE_BYTES),
    ):
        other = DynamicMergeEngine(
            engine.adapter,
            engine.adapter.state_dict(),
            PackedSwitches.from_pack(suite.pack),
            suite.heads,
            strategy=strategy,
            dense_bytes=dense,
        )
        res = evaluate_routed(AutoSwitch(other, auto.router), suite.heads, sets, k)
        assert res["per_task"] == per_task, (strategy, dense)
    fast = Suite(out, dense_bytes=EVAL_DENSE_BYTES).evaluate("auto-switch", "test")
    assert fast["per_task"] == per_task and fast["routing_accuracy"] == routed_ok / n


def test_a_resumed_build_reads_back_every_stage_and_equals_a_fresh_one(smoke_text, tmp_path):
    from tswitch.suites.build import run_build

    spec = smoke(get_suite_spec("text-minilm"))  # the fixture's cache folder: its fine-tunes are reused
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixture's thread count: the same float sums
    try:
        first = run_build(spec, str(tmp_path / "a"), log=lambda s: None, resume=True, fresh=True)
        second = run_build(spec, str(tmp_path / "b"), log=lambda s: None, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert first["provenance"]["resumed_stages"] == 0
    assert second["provenance"]["resumed_stages"] > 10
    # the fixture trained its fine-tunes; these builds read them from the cache, and say so
    assert smoke_text[1]["provenance"]["finetunes_reused"] == 0
    assert first["provenance"]["finetunes_reused"] == second["provenance"]["finetunes_reused"] == len(spec.tasks)
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k != "provenance"}, sort_keys=True)  # noqa: E731
    assert strip(first) == strip(second) == strip(smoke_text[1])


def test_routing_confusion_matches_the_routing_accuracy_and_saves(smoke_text, tmp_path, capsys):
    import shutil

    out = str(tmp_path / "suite")
    shutil.copytree(smoke_text[0], out)
    suite = Suite(out)
    conf = suite.routing_confusion("test")
    assert conf["tasks"] == list(smoke_text[1]["tasks"]) and conf["k"] == suite.manifest.router.k
    assert [sum(row) for row in conf["matrix"]] == [12, 12]  # every test item lands in one column
    assert conf["accuracy"] == smoke_text[1]["methods"]["auto-switch"]["routing_accuracy"]
    assert main(["confusion", "--suite", out, "--save"]) == 0
    assert "routing accuracy" in capsys.readouterr().out
    saved = json.load(open(os.path.join(out, "results.json")))["routing_confusion"]["auto-switch"]
    assert saved["matrix"] == conf["matrix"]
    assert main(["confusion", "--suite", out, "-k", "0"]) == 2
    assert "-k must be in" in capsys.readouterr().err


def test_route_depth_rebuilds_the_served_router_and_tries_other_depths(smoke_text, capsys):
    """At the suite's own depth the rebuilt router routes exactly as the committed one (same
    exemplars, same features); other depths give their own numbers; bad depths are one-line errors."""
    from tswitch.suites.route_depth import routing_by_depth

    suite = Suite(smoke_text[0])
    served = suite.manifest.adapter_args.get("route_layers")
    res = routing_by_depth(suite, [served, 0, None], splits=["test"])
    assert res["served_depth"] == served and [r["depth"] for r in res["rows"]] == [served, 0, None]
    assert res["rows"][0]["test"] == smoke_text[1]["methods"]["auto-switch"]["routing_accuracy"]
    assert all(0.0 <= r["test"] <= 1.0 and set(r["test_recall"]) == set(suite.task_names) for r in res["rows"])
    assert main(["route-depth", "--suite", smoke_text[0], "--depths", "0", "full", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "full" in out and "%" in out
    assert main(["route-depth", "--suite", smoke_text[0], "--depths", "99"]) == 2
    assert "route_layers must be in" in capsys.readouterr().err
    assert main(["route-depth", "--suite", smoke_text[0], "--depths", "-1"]) == 2


def test_eval_route_layers_serves_auto_switch_from_a_router_at_another_depth(smoke_text, capsys):
    """At the served depth, ``eval --route-layers`` reproduces the committed Auto-Switch numbers (the
    rebuilt router is the committed one); at depth 0 the routing changes and the pack does not."""
    path, results = smoke_text
    served = Suite(path).manifest.adapter_args.get("route_layers")
    committed = results["methods"]["auto-switch"]
    argv = ["eval", "--suite", path, "--method", "auto-switch", "--json", "--route-layers"]
    assert main(argv + [str(served)]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["route_layers"] == served
    assert same["routing_accuracy"] == committed["routing_accuracy"]
    assert abs(same["average"] - committed["average"]) < 1e-9
    assert main(argv + ["0"]) == 0
    shallow = json.loads(capsys.readouterr().out)
    assert shallow["route_layers"] == 0 and shallow["extra_bytes"] == same["extra_bytes"]  # same width, same pack
    assert set(shallow["per_task"]) == set(same["per_task"]) and 0.0 <= shallow["routing_accuracy"] <= 1.0
    assert main(["eval", "--suite", path, "--method", "t-switch", "--route-layers", "0"]) == 2
    assert "auto-switch only" in capsys.readouterr().err


def test_flex_markdown_names_each_ablation_run_and_gives_every_tab_xi_row_its_interval():
    from tswitch.suites import flex_report
    from tswitch.suites.stats import intervals

    n = {"a": 1000, "b": 1000}

    def scored(x, y):
        return {"per_task": {"a": x, "b": y}, "average": (x + y) / 2, "routing_accuracy": 0.9}

    def run(mode, alpha, steps_s):
        return {
            "mode": mode, "loss": "kl", "lambda": 0.3, "steps": 500, "alpha": alpha, "exemplars": 100,
            "bytes": 1000, "seconds_per_step": dict(zip("abc", steps_s)),
            "flexswitch": scored(0.9, 0.8), "knn": scored(0.85, 0.75),
        }  # fmt: skip

    block = {
        "split": "test",
        "main": "flex-kl",
        "runs": {
            "flex-kl": {**run("lgs+bas", None, (1.0, 2.0, 3.0)), "low_rank": scored(0.88, 0.78)},
            "flex-lgs-kl": run("lgs", None, (1.5, 9.2, 1.4)),  # one task's wall time starved by another job
            "flex-bas0.7-kl": run("bas", 0.7, (1.0, 1.0, 1.0)),
        },
        "ablation": [
            {
                "row": "Auto-Switch",
                "run": None,
                "router": "knn",
                "average": 0.7,
                "routing_accuracy": 0.9,
                "switch_bytes": 5000,
                "router_bytes": 64,
            },
            {
                "row": "+ LGS",
                "run": "flex-lgs-kl",
                "router": "knn",
                "average": 0.8,
                "routing_accuracy": 0.9,
                "switch_bytes": 1000,
                "router_bytes": 64,
            },
            {
                "row": "Auto-FlexSwitch (+ low-rank router)",
                "run": "flex-kl",
                "router": "low_rank",
                "average": 0.83,
                "routing_accuracy": 0.9,
                "switch_bytes": 1000,
                "router_bytes": 8,
            },
        ],  # fmt: skip
        "ablation_loss": "kl",
    }
    auto = scored(0.72, 0.68)
    shown = flex_report.markdown(block, n, auto)
    lines = {line.split(" | ")[0]: line for line in shown.splitlines() if line.startswith("| ")}

    assert "| kl, LGS only (1 bit) |" in lines["| `flex-lgs-kl`"]
    assert "| kl, BAS on P-Spar α 0.7 |" in lines["| `flex-bas0.7-kl`"]
    assert "| kl | 0.3 |" in lines["| `flex-kl` (served)"]
    assert lines["| `flex-lgs-kl`"].endswith("| 1.50 |")  # the median step, not the starved task's mean 4.03

    def ci(row):
        lo, hi = intervals(row, n)["average_ci"]
        return f"[{100 * lo:.1f}, {100 * hi:.1f}]"

    assert f"70.0% {ci(auto)}" in lines["| Auto-Switch"]
    assert f"80.0% {ci(block['runs']['flex-lgs-kl']['knn'])}" in lines["| + LGS"]
    assert f"83.0% {ci(block['runs']['flex-kl']['low_rank'])}" in lines["| Auto-FlexSwitch (+ low-rank router)"]
    # without the split's sizes the rows stay bare percentages
    assert "| 70.0% |" in flex_report.markdown(block, None, auto)


def test_routed_evaluation_benchmark_runs_every_config_and_checks_they_agree(smoke_text, capsys):
    import importlib

    bench = importlib.import_module("benchmarks.bench_routed_eval")
    out, _ = smoke_text
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--suite", out, "--limit", "6", "--configs", "merge:0,auto:64", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert printed.count("same per-task accuracies as the first: True") == 2, printed
    with pytest.raises(SystemExit):
        bench.main(["--suite", out, "--configs", "fast:1"])
    assert "STRATEGY:MIB" in capsys.readouterr().err
