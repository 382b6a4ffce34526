"""The command line: happy paths through a real subprocess-free ``main()``, and every error path
(one line on stderr, exit status 2, no traceback, no partial output file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from tswitch.cli import main
from tswitch.core.binary import b_approx
from tswitch.core.task_vector import TaskVector


@pytest.fixture()
def models(tmp_path):
    g = torch.Generator().manual_seed(0)
    base = {
        "enc.weight": torch.randn(40, 24, generator=g),
        "enc.bias": torch.randn(40, generator=g),
        "bn.running_mean": torch.randn(40, generator=g),
        "bn.running_var": torch.rand(40, generator=g) + 0.5,
        "bn.num_batches_tracked": torch.tensor(7),
    }
    paths = {"base": tmp_path / "base.safetensors"}
    save_file(base, paths["base"])
    for i, name in enumerate(["a", "b"]):
        ft = {
            k: v + 0.05 * (i + 1) * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
            for k, v in base.items()
        }
        paths[name] = tmp_path / f"{name}.safetensors"
        save_file(ft, paths[name])
    other = dict(base, **{"enc.bias": base["enc.bias"] + 1.0})
    paths["other"] = tmp_path / "other.safetensors"
    save_file(other, paths["other"])
    wrong_shape = dict(base, **{"enc.bias": torch.zeros(41)})
    paths["wrong_shape"] = tmp_path / "wrong_shape.safetensors"
    save_file(wrong_shape, paths["wrong_shape"])
    # a Hugging Face style folder with two shards
    folder = tmp_path / "hf_base"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    keys = list(base)
    save_file({k: base[k] for k in keys[:2]}, folder / "model-00001-of-00002.safetensors")
    save_file({k: base[k] for k in keys[2:]}, folder / "model-00002-of-00002.safetensors")
    paths["folder"] = folder
    return {k: str(v) for k, v in paths.items()}, base


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def compress(capsys, models, tmp_path, *extra):
    paths, _ = models
    out = tmp_path / "p.tsw"
    code, _, err = run(
        capsys,
        "compress",
        "--pretrained",
        paths["base"],
        "--finetuned",
        f"a={paths['a']}",
        "--alpha",
        "0.7",
        "--out",
        out,
        *extra,
    )
    assert code == 0, err
    return out


def test_compress_inspect_decompress_merge(models, tmp_path, capsys):
    paths, base = models
    pack = compress(capsys, models, tmp_path)
    code, _, err = run(capsys, "add-task", pack, "--pretrained", paths["folder"], "--finetuned", f"b={paths['b']}")
    assert code == 0, err

    code, out, _ = run(capsys, "inspect", pack, "--json")
    report = json.loads(out)
    encodings = {row["encoding"] for tensor in report["tensors"] for row in tensor["tasks"]}
    assert report["format_version"] == (2 if "golomb" in encodings else 1)
    assert report["num_params"] == 40 * 24 + 3 * 40
    assert [t["name"] for t in report["tasks"]] == ["a", "b"]
    for t in report["tasks"]:
        assert t["alpha"] == 0.7 and 0.29 < t["density"] < 0.31
        assert t["bits_per_param"] == pytest.approx(8 * t["bytes"] / report["num_params"])
    assert report["total_bytes"] == sum(t["bytes"] for t in report["tasks"])
    for tensor in report["tensors"]:  # auto layout: never above SASS (Eq. 16), never below the bound
        for row in tensor["tasks"]:
            assert row["bound_bytes"] <= row["bytes"] <= row["eq16_bytes"]
    for t in report["tasks"]:
        assert t["bound_bytes"] <= t["bytes"] <= t["eq16_bytes"]
        assert sum(t["bytes_by_encoding"].values()) == t["bytes"] - t["side_bytes"]
    code, out, _ = run(capsys, "inspect", pack, "--tensors")
    assert code == 0 and "enc.weight" in out and "bits/param" in out

    tv_path = tmp_path / "tv.safetensors"
    assert run(capsys, "decompress", pack, "--task", "a", "--out", tv_path)[0] == 0
    tv = load_file(tv_path)
    tau = TaskVector.from_state_dicts(base, load_file(paths["a"]))
    for name, t in tau.items():
        assert tv[name].dtype == torch.float32
        torch.testing.assert_close(tv[name], b_approx(t, 0.7).reconstruct())

    merged_path = tmp_path / "merged.safetensors"
    assert (
        run(
            capsys,
            "merge",
            "--pretrained",
            paths["base"],
            "--pack",
            pack,
            "--weights",
            "a=0.25,b=0.75",
            "--out",
            merged_path,
        )[0]
        == 0
    )
    merged = load_file(merged_path)
    tau_b = TaskVector.from_state_dicts(base, load_file(paths["b"]))
    for name in tau.keys():
        want = (
            base[name] + 0.25 * b_approx(tau[name], 0.7).reconstruct() + 0.75 * b_approx(tau_b[name], 0.7).reconstruct()
        )
        torch.testing.assert_close(merged[name], want)
    assert merged["bn.num_batches_tracked"] == 7


def test_bitmap_layout_and_dense_pattern(models, tmp_path, capsys):
    pack = compress(capsys, models, tmp_path, "--layout", "bitmap", "--dense-pattern", r"^bn\.")
    report = json.loads(run(capsys, "inspect", pack, "--json")[1])
    encodings = {t["name"]: t["tasks"][0]["encoding"] for t in report["tensors"]}
    assert encodings == {
        "enc.weight": "bitmap",
        "enc.bias": "bitmap",
        "bn.running_mean": "dense-f16",
        "bn.running_var": "dense-f16",
    }


def _assert_clean_error(code, out, err, needle):
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err


@pytest.mark.parametrize(
    "case",
    [
        "missing_pretrained",
        "missing_finetuned",
        "alpha_high",
        "alpha_negative",
        "alpha_text",
        "bad_pair",
        "wrong_shape",
        "pickle_file",
        "bad_layout",
    ],
)
def test_compress_errors(models, tmp_path, capsys, case):
    paths, _ = models
    out = tmp_path / "out.tsw"
    pickle_file = tmp_path / "model.bin"
    pickle_file.write_bytes(b"\x80\x04not really")
    args = {"pretrained": paths["base"], "finetuned": f"a={paths['a']}", "alpha": "0.5", "layout": "sass"}
    needle = {
        "missing_pretrained": "not found",
        "missing_finetuned": "not found",
        "alpha_high": "alpha must be in [0, 1)",
        "alpha_negative": "alpha must be in [0, 1)",
        "alpha_text": "alpha must be in [0, 1)",
        "bad_pair": "NAME=VALUE",
        "wrong_shape": "shape mismatch",
        "pickle_file": "pickled",
        "bad_layout": "invalid choice",
    }[case]
    if case == "missing_pretrained":
        args["pretrained"] = str(tmp_path / "nope.safetensors")
    elif case == "missing_finetuned":
        args["finetuned"] = f"a={tmp_path / 'nope.safetensors'}"
    elif case == "alpha_high":
        args["alpha"] = "1.0"
    elif case == "alpha_negative":
        args["alpha"] = "-0.1"
    elif case == "alpha_text":
        args["alpha"] = "lots"
    elif case == "bad_pair":
        args["finetuned"] = paths["a"]
    elif case == "wrong_shape":
        args["finetuned"] = f"a={paths['wrong_shape']}"
    elif case == "pickle_file":
        args["finetuned"] = f"a={pickle_file}"
    elif case == "bad_layout":
        args["layout"] = "zip"
    code, o, err = run(
        capsys,
        "compress",
        "--pretrained",
        args["pretrained"],
        "--finetuned",
        args["finetuned"],
        "--alpha",
        args["alpha"],
        "--layout",
        args["layout"],
        "--out",
        out,
    )
    _assert_clean_error(code, o, err, needle)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_pack_errors(models, tmp_path, capsys):
    paths, _ = models
    pack = compress(capsys, models, tmp_path)
    good = pack.read_bytes()
    out = tmp_path / "merged.safetensors"

    # pack made for another base model (same names and shapes, other values)
    code, o, err = run(
        capsys, "merge", "--pretrained", paths["other"], "--pack", pack, "--weights", "a=1", "--out", out
    )
    _assert_clean_error(code, o, err, "another base model")
    code, o, err = run(capsys, "add-task", pack, "--pretrained", paths["other"], "--finetuned", f"b={paths['b']}")
    _assert_clean_error(code, o, err, "another base model")
    assert pack.read_bytes() == good
    # shape mismatch between pack and base
    code, o, err = run(
        capsys, "merge", "--pretrained", paths["wrong_shape"], "--pack", pack, "--weights", "a=1", "--out", out
    )
    _assert_clean_error(code, o, err, "shape")
    # unknown task
    code, o, err = run(
        capsys, "merge", "--pretrained", paths["base"], "--pack", pack, "--weights", "zz=1", "--out", out
    )
    _assert_clean_error(code, o, err, "unknown task 'zz'")
    code, o, err = run(capsys, "decompress", pack, "--task", "zz", "--out", out)
    _assert_clean_error(code, o, err, "unknown task 'zz'")
    # bad weights
    code, o, err = run(
        capsys, "merge", "--pretrained", paths["base"], "--pack", pack, "--weights", "a=heavy", "--out", out
    )
    _assert_clean_error(code, o, err, "not a number")
    # duplicate task on add-task
    code, o, err = run(capsys, "add-task", pack, "--pretrained", paths["base"], "--finetuned", f"a={paths['b']}")
    _assert_clean_error(code, o, err, "already in")
    assert pack.read_bytes() == good
    # missing pack
    code, o, err = run(capsys, "inspect", tmp_path / "nope.tsw")
    _assert_clean_error(code, o, err, "not found")
    assert not out.exists()


@pytest.mark.parametrize("cut", [0, 4, 8, 40, -200, -1])
def test_truncated_pack(models, tmp_path, capsys, cut):
    pack = compress(capsys, models, tmp_path)
    data = pack.read_bytes()
    bad = tmp_path / "bad.tsw"
    bad.write_bytes(data[:cut] if cut else b"")
    out = tmp_path / "tv.safetensors"
    code, o, err = run(capsys, "decompress", bad, "--task", "a", "--out", out)
    _assert_clean_error(code, o, err, "pack")
    assert not out.exists()


def test_corrupt_payload_detected(models, tmp_path, capsys):
    pack = compress(capsys, models, tmp_path)
    data = bytearray(pack.read_bytes())
    data[-10] ^= 0xFF  # inside the last payload/scales of the data buffer
    bad = tmp_path / "bad.tsw"
    bad.write_bytes(bytes(data))
    out = tmp_path / "tv.safetensors"
    code, o, err = run(capsys, "decompress", bad, "--task", "a", "--out", out)
    _assert_clean_error(code, o, err, "corrupt")
    assert not out.exists()


def test_module_entry_point_has_no_traceback(tmp_path):
    """``python -m tswitch`` itself: exit status 2 and a single stderr line."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [sys.executable, "-m", "tswitch", "inspect", str(tmp_path / "missing.tsw")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tswitch", "frobnicate"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
