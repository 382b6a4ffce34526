"""tswitch.pack and the .tsw container: round trips against B-Approx, atomic writes, lazy reads,
corrupt files, and a golden pack that pins the byte format."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import stat
import struct

import numpy as np
import pytest
import safetensors
import torch
from safetensors.numpy import save as save_numpy

from tswitch.codec import container
from tswitch.codec.container import PackError, PackHeader
from tswitch.codec.layouts import get_layout
from tswitch.core.binary import TSwitch, b_approx
from tswitch.core.task_vector import TaskVector
from tswitch.pack import DENSE, SwitchPack, add_task, base_fingerprint, create_pack, encode_task, tensor_specs

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
ALPHAS = {"a": 0.5, "b": 0.9}


# -- a toy model -------------------------------------------------------------------------------


def base_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "bn.weight": torch.rand(4, generator=g) + 0.5,
        "bn.running_mean": torch.randn(4, generator=g),
        "bn.running_var": torch.rand(4, generator=g) + 0.5,
        "bn.num_batches_tracked": torch.tensor(10),
        "fc.weight": torch.randn(5, 8, generator=g),
        "fc.bias": torch.randn(5, generator=g),
        "empty.weight": torch.zeros(0, 3),
        "logit_scale": torch.tensor(2.5),
    }


def finetuned_state(base: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {k: v + 0.1 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 5 for k, v in base.items()}
    out["fc.bias"][0] = base["fc.bias"][0]  # an exact zero in the task vector
    return out


FLOATING = [
    "conv.weight",
    "bn.weight",
    "bn.running_mean",
    "bn.running_var",
    "fc.weight",
    "fc.bias",
    "empty.weight",
    "logit_scale",
]


@pytest.fixture(scope="module")
def model():
    base = base_state()
    taus = {
        name: TaskVector.from_state_dicts(base, finetuned_state(base, seed))
        for name, seed in (("a", 1), ("b", 2), ("c", 3))
    }
    return base, taus


def encode(model, name, layout="sass", **kwargs):
    base, taus = model
    return encode_task(name, taus[name], tensor_specs(base), ALPHAS.get(name, 0.7), layout=layout, **kwargs)


def make_pack(tmp_path, model, layout="sass", names=("a", "b")) -> str:
    path = str(tmp_path / "model.tsw")
    create_pack(path, model[0], [encode(model, n, layout) for n in names])
    return path


def assert_matches_b_approx(item, tau: torch.Tensor, alpha: float) -> None:
    expected = b_approx(tau, alpha)
    assert isinstance(item, TSwitch)
    assert item.shape == tau.shape
    assert torch.equal(item.mask, expected.mask)
    assert torch.equal(item.positive, expected.positive)
    assert item.scale == float(np.float32(expected.scale))  # stored as float32
    assert item.scale == pytest.approx(expected.scale, rel=float(np.finfo(np.float32).eps), abs=0.0)


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg, f"message is not one line: {msg!r}"
    return msg


# -- round trips -------------------------------------------------------------------------------


def test_tensor_specs_cover_floating_tensors_only(model):
    specs = tensor_specs(model[0])
    assert [s.name for s in specs] == FLOATING
    assert specs[-2].shape == (0, 3) and specs[-2].numel == 0
    assert specs[-1].shape == () and specs[-1].numel == 1
    assert {s.dtype for s in specs} == {"float32"}


@pytest.mark.parametrize("layout", ["sass", "bitmap", "golomb", "auto"])
def test_round_trip_equals_b_approx(tmp_path, model, layout):
    base, taus = model
    path = make_pack(tmp_path, model, layout)
    pack = SwitchPack(path)
    assert pack.tasks == ["a", "b"]
    # the lowest version holding the pack's encodings: golomb came with version 2
    uses_golomb = any(e == "golomb" for t in pack.header.tasks for e in t.encodings)
    assert pack.header.format_version == (2 if uses_golomb else 1)
    assert uses_golomb == (layout == "golomb") or layout == "auto"
    assert [(s.name, s.shape) for s in pack.header.tensors] == [(k, tuple(base[k].shape)) for k in FLOATING]
    pack.check_base(base)
    for name in ("a", "b"):
        entry = pack.task(name)
        alpha = ALPHAS[name]
        assert entry.alpha == alpha and entry.layout == layout and entry.bits == 1
        if layout != "auto":
            assert entry.encodings == (layout,) * len(FLOATING)
        switches = pack.load_task(name)
        assert list(switches) == FLOATING
        for k in FLOATING:
            assert_matches_b_approx(switches[k], taus[name][k], alpha)
        nnz = tuple(b_approx(taus[name][k], alpha).nnz for k in FLOATING)
        assert entry.nnz == nnz
        numel = [taus[name][k].numel() for k in FLOATING]
        masks = [b_approx(taus[name][k], alpha).mask.numpy().reshape(-1) for k in FLOATING]
        sizes = [{lay: get_layout(lay).size(m, 1) for lay in ("sass", "bitmap", "golomb")} for m in masks]
        assert entry.nbytes == tuple(size[e] for size, e in zip(sizes, entry.encodings))
        if layout == "auto":  # every tensor in its smallest layout
            assert entry.nbytes == tuple(min(size.values()) for size in sizes)
        assert entry.density == pytest.approx(sum(nnz) / sum(numel))
        assert entry.total_bytes == sum(entry.nbytes) + 4 * len(FLOATING)
        tv = pack.task_vector(name)
        for k in FLOATING:
            assert tv[k].dtype == torch.float32
            torch.testing.assert_close(tv[k], b_approx(taus[name][k], alpha).reconstruct(), rtol=1e-7, atol=0)
    assert switches["empty.weight"].nnz == 0 and switches["empty.weight"].scale == 0.0
    assert switches["logit_scale"].nnz == 1


def test_dense_pattern_keeps_float16_copies(tmp_path, model):
    base, taus = model
    path = str(tmp_path / "dense.tsw")
    task = encode(model, "a", "bitmap", dense_pattern=r"^bn\.running_", labels=["cat", "dog"])
    create_pack(path, base, [task])
    pack = SwitchPack(path)
    entry = pack.task("a")
    dense = ["bn.running_mean", "bn.running_var"]
    assert entry.encodings == tuple(DENSE if k in dense else "bitmap" for k in FLOATING)
    assert entry.labels == ("cat", "dog")
    items = pack.load_task("a")
    for k in FLOATING:
        if k in dense:
            assert isinstance(items[k], torch.Tensor) and items[k].dtype == torch.float32
            tau = taus["a"][k]
            assert float(((items[k] - tau).abs() / tau.abs()).max()) < 1e-3
            assert entry.nbytes[FLOATING.index(k)] == 2 * tau.numel()
        else:
            assert_matches_b_approx(items[k], taus["a"][k], ALPHAS["a"])
    switched = [k for k in FLOATING if k not in dense]
    nnz = sum(items[k].nnz for k in switched)
    assert entry.density == pytest.approx(nnz / sum(taus["a"][k].numel() for k in switched))
    torch.testing.assert_close(pack.task_vector("a")["bn.running_var"], items["bn.running_var"])


def test_encode_task_errors(model):
    base, taus = model
    specs = tensor_specs(base)
    with pytest.raises(ValueError, match="alpha"):
        encode_task("a", taus["a"], specs, 1.0)
    with pytest.raises(ValueError, match="unknown layout 'zip'; valid: bitmap, golomb, sass"):
        encode_task("a", taus["a"], specs, 0.5, layout="zip")
    with pytest.raises(ValueError, match="non-empty"):
        encode_task("", taus["a"], specs, 0.5)
    bad = TaskVector({**taus["a"].vector, "fc.bias": torch.zeros(6)})
    with pytest.raises(ValueError, match=r"fc.bias: \(6,\) vs \(5,\)"):
        encode_task("a", bad, specs, 0.5)
    partial = TaskVector({k: v for k, v in taus["a"].items() if k != "fc.weight"})
    with pytest.raises(ValueError, match="lacks tensor fc.weight"):
        encode_task("a", partial, specs, 0.5)


def test_create_pack_rejects_duplicates_and_foreign_tasks(tmp_path, model):
    base, taus = model
    path = str(tmp_path / "dup.tsw")
    with pytest.raises(ValueError, match="duplicate task names"):
        create_pack(path, base, [encode(model, "a"), encode(model, "a")])
    reordered = encode_task("a", taus["a"], tensor_specs(base)[::-1], 0.5)
    with pytest.raises(ValueError, match="another tensor list or order"):
        create_pack(path, base, [reordered])
    assert not os.path.exists(path)
    assert os.listdir(tmp_path) == []


def test_pack_file_mode_follows_umask(tmp_path, model):
    path = make_pack(tmp_path, model)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)
    add_task(path, model[0], encode(model, "c"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


# -- add_task, atomic writes -------------------------------------------------------------------


def test_add_task_appends(tmp_path, model):
    base, taus = model
    path = make_pack(tmp_path, model, names=("a",))
    before = SwitchPack(path).load_task("a")
    inode = os.stat(path).st_ino
    header = add_task(path, base, encode(model, "b", "bitmap"))
    assert [t.name for t in header.tasks] == ["a", "b"]
    assert os.stat(path).st_ino != inode, "the pack is replaced, not rewritten in place"
    pack = SwitchPack(path)
    assert pack.tasks == ["a", "b"]
    assert pack.task("a").layout == "sass" and pack.task("b").layout == "bitmap"
    after = pack.load_task("a")
    for k in FLOATING:
        assert torch.equal(after[k].mask, before[k].mask) and after[k].scale == before[k].scale
        assert_matches_b_approx(pack.load_task("b")[k], taus["b"][k], ALPHAS["b"])
    assert sorted(os.listdir(tmp_path)) == ["model.tsw"]


@pytest.mark.parametrize("where", ["replace", "fsync", "interrupt"])
def test_add_task_failure_leaves_pack_untouched(tmp_path, model, monkeypatch, where):
    path = make_pack(tmp_path, model, names=("a",))
    with open(path, "rb") as f:
        original = f.read()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt if where == "interrupt" else OSError("simulated disk failure")

    monkeypatch.setattr(container.os, "fsync" if where == "fsync" else "replace", fail)
    with pytest.raises(KeyboardInterrupt if where == "interrupt" else OSError):
        add_task(path, model[0], encode(model, "b"))
    monkeypatch.undo()
    with open(path, "rb") as f:
        assert f.read() == original
    assert os.listdir(tmp_path) == ["model.tsw"], "no temporary .part file may remain"
    assert SwitchPack(path).tasks == ["a"]


def test_add_task_refuses_duplicates_and_other_bases(tmp_path, model):
    base, _ = model
    path = make_pack(tmp_path, model)
    with open(path, "rb") as f:
        original = f.read()
    with pytest.raises(ValueError, match="'a' is already in"):
        add_task(path, base, encode(model, "a"))
    other = {k: v + 1e-3 if v.is_floating_point() else v for k, v in base.items()}
    with pytest.raises(PackError, match="another base model"):
        add_task(path, other, encode(model, "c"))
    with open(path, "rb") as f:
        assert f.read() == original
    assert os.listdir(tmp_path) == ["model.tsw"]


# -- base model checks, unknown tasks ----------------------------------------------------------


def test_check_base(tmp_path, model):
    base, _ = model
    pack = SwitchPack(make_pack(tmp_path, model))
    pack.check_base(base)
    pack.check_base({**base, "bn.num_batches_tracked": torch.tensor(99)})  # integer buffers don't count
    pack.check_base({k: v.clone() for k, v in base.items()})

    changed = dict(base, **{"fc.bias": base["fc.bias"].clone()})
    changed["fc.bias"][3] += 1e-6
    with pytest.raises(PackError, match="another base model") as info:
        pack.check_base(changed)
    one_line(info.value)
    with pytest.raises(PackError, match=r"another base model: fc.weight has shape \(8, 5\), pack expects \(5, 8\)"):
        pack.check_base(dict(base, **{"fc.weight": torch.zeros(8, 5)}))
    missing = {k: v for k, v in base.items() if k != "conv.weight"}
    with pytest.raises(PackError, match="another base model.*conv.weight"):
        pack.check_base(missing)


def test_base_fingerprint_depends_on_values_names_and_shapes(model):
    base = model[0]
    fp = base_fingerprint(base)
    assert fp.startswith("sha256:") and fp == base_fingerprint(dict(reversed(list(base.items()))))
    assert fp != base_fingerprint({**base, "logit_scale": torch.tensor(2.5000002)})
    assert fp != base_fingerprint({**base, "fc.bias": base["fc.bias"].view(5, 1)})
    assert fp != base_fingerprint({("x" + k): v for k, v in base.items()})


def test_unknown_task_lists_tasks(tmp_path, model):
    pack = SwitchPack(make_pack(tmp_path, model))
    for call in (pack.load_task, pack.task, pack.task_vector):
        with pytest.raises(PackError, match=r"unknown task 'zebra'; pack has: a, b") as info:
            call("zebra")
        one_line(info.value)


# -- lazy reading ------------------------------------------------------------------------------


def test_load_task_reads_only_that_task(tmp_path, model, monkeypatch):
    path = make_pack(tmp_path, model)
    real = safetensors.safe_open
    reads: list[str] = []

    class Spy:
        def __init__(self, *args, **kwargs):
            self._handle = real(*args, **kwargs)

        def __enter__(self):
            self._handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self._handle.__exit__(*exc)

        def metadata(self):
            return self._handle.metadata()

        def keys(self):
            return self._handle.keys()

        def get_tensor(self, key):
            reads.append(key)
            return self._handle.get_tensor(key)

        def __getattr__(self, name):
            raise AssertionError(f"unexpected safetensors access: {name}")

    monkeypatch.setattr(safetensors, "safe_open", Spy)
    pack = SwitchPack(path)
    assert reads == [], "opening a pack reads only its header"
    pack.load_task("b")
    assert sorted(reads) == sorted([f"t1.{j}" for j in range(len(FLOATING))] + ["t1.scales"])
    reads.clear()
    pack.load_task("a")
    assert all(k.startswith("t0.") for k in reads) and reads


# -- corrupt files -----------------------------------------------------------------------------


def tensor_offsets(data: bytes) -> dict[str, tuple[int, int]]:
    """Absolute byte ranges of each tensor in a safetensors file."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    return {
        k: (8 + size + v["data_offsets"][0], 8 + size + v["data_offsets"][1])
        for k, v in header.items()
        if k != "__metadata__"
    }


def open_and_load_all(path: str) -> None:
    pack = SwitchPack(path)
    for name in pack.tasks:
        pack.load_task(name)


def write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.fixture()
def pack_bytes(tmp_path, model):
    path = make_pack(tmp_path, model)
    with open(path, "rb") as f:
        return f.read()


def test_truncated_files_raise_pack_error(tmp_path, pack_bytes):
    (size,) = struct.unpack("<Q", pack_bytes[:8])
    data_start = 8 + size
    cuts = {
        0,
        1,
        7,
        8,
        9,
        16,
        100,
        data_start - 1,
        data_start,
        data_start + 3,
        (data_start + len(pack_bytes)) // 2,
        len(pack_bytes) - 4,
        len(pack_bytes) - 1,
    }
    for cut in sorted(cuts):
        path = write(tmp_path / f"cut{cut}.tsw", pack_bytes[:cut])
        with pytest.raises(PackError) as info:
            open_and_load_all(path)
        one_line(info.value)


def test_flipped_payload_byte_fails_checksum_of_that_task_only(tmp_path, pack_bytes):
    offsets = tensor_offsets(pack_bytes)
    j = FLOATING.index("fc.weight")
    for key, bad_task, good_task in ((f"t0.{j}", "a", "b"), ("t1.scales", "b", "a"), (f"t1.{j}", "b", "a")):
        start, end = offsets[key]
        data = bytearray(pack_bytes)
        data[(start + end) // 2] ^= 0x5A
        path = write(tmp_path / "flip.tsw", bytes(data))
        pack = SwitchPack(path)  # the header is intact
        with pytest.raises(PackError, match=f"checksum mismatch for task '{bad_task}'") as info:
            pack.load_task(bad_task)
        one_line(info.value)
        pack.load_task(good_task)


def test_random_flips_in_data_area_raise_pack_error(tmp_path, pack_bytes):
    offsets = tensor_offsets(pack_bytes)
    lo = min(s for s, _ in offsets.values())
    rng = np.random.default_rng(0)
    for pos in rng.integers(lo, len(pack_bytes), 25):
        data = bytearray(pack_bytes)
        data[int(pos)] ^= 1 << int(rng.integers(0, 8))
        path = write(tmp_path / "flip.tsw", bytes(data))
        with pytest.raises(PackError) as info:
            open_and_load_all(path)
        one_line(info.value)


def rewrite_metadata(pack_bytes: bytes, edit) -> bytes:
    """The same tensors with the tswitch metadata JSON passed through ``edit(dict) -> dict | str``."""
    offsets = tensor_offsets(pack_bytes)
    (size,) = struct.unpack("<Q", pack_bytes[:8])
    header = json.loads(pack_bytes[8 : 8 + size])
    tensors = {
        k: np.frombuffer(pack_bytes[s:e], dtype=np.float32 if k.endswith("scales") else np.uint8)
        for k, (s, e) in offsets.items()
    }
    meta = edit(json.loads(header["__metadata__"]["tswitch"]))
    return save_numpy(tensors, metadata={"tswitch": meta if isinstance(meta, str) else json.dumps(meta)})


def _set(obj, path, value):
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


_DELETE = object()
BAD_METADATA = {
    "garbage": lambda m: "{not json",
    "a list": lambda m: "[1, 2]",
    "a string": lambda m: '"tswitch"',
    "wrong format": lambda m: _set(m, ["format"], "other"),
    "no fingerprint": lambda m: _set(m, ["base_fingerprint"], _DELETE),
    "no tensors": lambda m: _set(m, ["tensors"], _DELETE),
    "newer version": lambda m: _set(m, ["format_version"], 3),
    "bad version": lambda m: _set(m, ["format_version"], "one"),
    "bad shape": lambda m: _set(m, ["tensors", 0, "shape"], "4x3"),
    "short task": lambda m: _set(m, ["tasks", 0, "nnz"], [1]),
    "task not a dict": lambda m: _set(m, ["tasks", 0], 7),
    "nbytes lie": lambda m: _set(m, ["tasks", 1, "nbytes"], [n + 1 for n in m["tasks"][1]["nbytes"]]),
    "checksum lie": lambda m: _set(m, ["tasks", 0, "checksum"], "sha256:" + "0" * 64),
    "extra task": lambda m: _set(m, ["tasks"], m["tasks"] + [dict(m["tasks"][0], name="c")]),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_corrupt_metadata_raises_pack_error(tmp_path, pack_bytes, case):
    path = write(tmp_path / "meta.tsw", rewrite_metadata(pack_bytes, BAD_METADATA[case]))
    with pytest.raises(PackError) as info:
        open_and_load_all(path)
    one_line(info.value)


def test_unchanged_metadata_rewrite_still_loads(tmp_path, pack_bytes):
    open_and_load_all(write(tmp_path / "same.tsw", rewrite_metadata(pack_bytes, lambda m: m)))


@pytest.mark.parametrize(
    "case",
    ["empty", "text", "zip", "safetensors without metadata", "safetensors with other metadata", "missing", "folder"],
)
def test_not_a_pack_raises_pack_error(tmp_path, case):
    path = tmp_path / "x.tsw"
    if case == "empty":
        write(path, b"")
    elif case == "text":
        write(path, b"hello, this is not a pack\n" * 20)
    elif case == "zip":
        write(path, b"PK\x03\x04" + bytes(200))
    elif case == "safetensors without metadata":
        write(path, save_numpy({"x": np.zeros(3, np.float32)}))
    elif case == "safetensors with other metadata":
        write(path, save_numpy({"x": np.zeros(3, np.float32)}, metadata={"format": "pt"}))
    elif case == "folder":
        os.mkdir(path)
    with pytest.raises(PackError) as info:
        SwitchPack(str(path))
    assert isinstance(info.value, ValueError)
    msg = one_line(info.value)
    if case.startswith("safetensors"):
        assert "not a tswitch pack" in msg
    if case in ("missing", "folder"):
        assert "not found" in msg


def test_undecodable_payload_with_valid_checksum_names_tensor(tmp_path, model):
    """A payload that passes the checksum but not the layout (a buggy writer) is still a PackError."""
    base = model[0]
    task = encode(model, "a")
    j = FLOATING.index("fc.weight")
    payloads = list(task.payloads)
    payloads[j] = payloads[j][:-1]
    entry = task.entry
    bad = type(entry)(
        **{
            **entry.__dict__,
            "nbytes": tuple(len(p) for p in payloads),
            "checksum": container.payload_checksum(payloads, task.scales),
        }
    )
    header = PackHeader(base_fingerprint(base, FLOATING), tensor_specs(base), (bad,))
    path = str(tmp_path / "bad.tsw")
    container.write_pack(path, header, [payloads], [task.scales])
    with pytest.raises(PackError, match="fc.weight") as info:
        SwitchPack(path).load_task("a")
    one_line(info.value)


# -- the golden pack ---------------------------------------------------------------------------

GOLDEN = os.path.join(DATA, "golden.tsw")
GOLDEN_SHA256 = "cff7e8c0553c2752081cf095b8a339b839f6de287d50b61d8efa46ffbb26fdf8"


def load_generator():
    spec = importlib.util.spec_from_file_location("make_golden", os.path.join(DATA, "make_golden.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_pack_bytes_are_pinned():
    with open(GOLDEN, "rb") as f:
        data = f.read()
    assert len(data) < 4096
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256, (
        "the .tsw byte format changed; if on purpose, bump format_version, rerun "
        "`python -m tests.data.make_golden` and update GOLDEN_SHA256 and the literals here"
    )


def test_golden_pack_header():
    pack = SwitchPack(GOLDEN)
    header = pack.header
    assert header.format_version == 1
    assert [(s.name, s.shape, s.dtype) for s in header.tensors] == [
        ("fc.weight", (2, 4), "float32"),
        ("fc.bias", (3,), "float32"),
        ("bn.running_mean", (2,), "float32"),
    ]
    assert pack.tasks == ["a", "b"]
    a, b = header.tasks
    assert (a.layout, a.alpha, a.bits, a.encodings) == ("sass", 0.5, 1, ("sass", "sass", "sass"))
    assert (b.layout, b.alpha, b.bits, b.encodings) == ("bitmap", 0.25, 1, ("bitmap", "dense-f16", "bitmap"))
    assert a.nnz == (4, 2, 0) and a.nbytes == (7, 6, 5)
    assert b.nnz == (6, 3, 0) and b.nbytes == (2, 6, 1)
    assert a.density == 6 / 13 and b.density == 6 / 10
    assert a.labels is None and b.labels is None
    pack.check_base(load_generator().base_model())


def test_golden_pack_payload_bits():
    with safetensors.safe_open(GOLDEN, framework="numpy") as f:
        raw = {k: f.get_tensor(k) for k in f.keys()}
    # fc.weight of task a, SASS: G=8 (27 bits) | c-1=0 (8) | groups 11100001 | - - + - entries | padding
    assert raw["t0.0"].tobytes().hex() == "000001001c2ba0"
    assert raw["t0.1"].tobytes().hex() == "0000006015c0"  # G=3, c=1, groups 101, entries 01 11
    assert raw["t0.2"].tobytes().hex() == "0000002020"  # nothing kept: G=1, c=2, groups 0
    assert raw["t1.0"].tobytes().hex() == "cfc0"  # bitmap 11001111 | polarity 110000 | padding
    assert raw["t1.1"].tobytes().hex() == "0042003c00bc"  # float16 little-endian 3, 1, -1
    assert raw["t1.2"].tobytes().hex() == "00"


def test_golden_pack_decodes_to_hand_computed_switches():
    pack = SwitchPack(GOLDEN)
    f32 = lambda x: float(np.float32(x))  # noqa: E731 - scales are stored as float32
    a = pack.load_task("a")
    # tau fc.weight = [-3 -2 1 -1 | -1 1 -2 -3]: one of the two +1 kept (the first), 3 of 6 negatives
    # kept (-3, -3, then the first -2), scale = sqrt((9 + 4 + 1 + 9) / 4)
    assert a["fc.weight"].mask.tolist() == [[True, True, True, False], [False, False, False, True]]
    assert a["fc.weight"].positive.tolist() == [[False, False, True, False], [False, False, False, False]]
    assert a["fc.weight"].scale == f32(math.sqrt(23 / 4))
    # tau fc.bias = [-1 0 1]: both non-zeros kept, scale 1
    assert a["fc.bias"].mask.tolist() == [True, False, True]
    assert a["fc.bias"].positive.tolist() == [False, False, True]
    assert a["fc.bias"].scale == 1.0
    assert a["bn.running_mean"].mask.tolist() == [False, False] and a["bn.running_mean"].scale == 0.0

    b = pack.load_task("b")
    # tau fc.weight = [2 1 0 -1 | -2 -3 -4 -5] at alpha 0.25: both positives, the 4 largest negatives
    assert b["fc.weight"].mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert b["fc.weight"].positive.tolist() == [[True, True, False, False], [False, False, False, False]]
    assert b["fc.weight"].scale == f32(math.sqrt(59 / 6))
    assert b["fc.bias"].tolist() == [3.0, 1.0, -1.0]  # dense float16 copy
    assert b["bn.running_mean"].nnz == 0 and b["bn.running_mean"].scale == 0.0

    s = f32(math.sqrt(23 / 4))
    assert pack.task_vector("a")["fc.weight"].tolist() == [[-s, -s, s, 0.0], [0.0, 0.0, 0.0, -s]]


def test_golden_generator_is_deterministic(tmp_path):
    out = tmp_path / "golden.tsw"
    load_generator().main(["--out", str(out)])
    with open(GOLDEN, "rb") as f, open(out, "rb") as g:
        assert g.read() == f.read()


@pytest.mark.parametrize("layout", ["sass", "bitmap", "golomb"])
def test_decode_dense_matches_switch_reconstruction(layout):
    """The fast dense decoder equals decoding the switch and reconstructing it (Eq. 7)."""
    from tswitch.pack import decode_dense, decode_tensor

    g = torch.Generator().manual_seed(3)
    base = {"w": torch.randn(33, 17, generator=g), "v": torch.randn(5, generator=g), "z": torch.zeros(0)}
    tau = TaskVector({k: torch.randn(v.shape, generator=g) for k, v in base.items()})
    specs = tensor_specs(base)
    task = encode_task("t", tau, specs, 0.6, layout)
    for payload, spec, enc, scale, nnz in zip(task.payloads, specs, task.entry.encodings, task.scales, task.entry.nnz):
        dense = decode_dense(payload, spec, enc, 1, float(scale), nnz)
        assert torch.equal(dense, decode_tensor(payload, spec, enc, 1, float(scale)).reconstruct())


# -- the golden pack of format version 2 (golomb layout) -----------------------------------------

GOLDEN_V2 = os.path.join(DATA, "golden-v2.tsw")
GOLDEN_V2_SHA256 = "c266a082568180ec403087b0f6dd895c9fb5c6ae94e8b0b5c5db8dd334225268"


def test_golden_v2_pack_bytes_are_pinned(tmp_path):
    with open(GOLDEN_V2, "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == GOLDEN_V2_SHA256
    out = tmp_path / "golden-v2.tsw"
    load_generator().main(["--version", "2", "--out", str(out)])
    assert out.read_bytes() == data


def test_golden_v2_golomb_payload_bits_and_switches():
    pack = SwitchPack(GOLDEN_V2)
    assert pack.header.format_version == 2 and pack.tasks == ["a", "b", "c"]
    assert pack.header.writer == "tswitch (golden file)" and SwitchPack(GOLDEN).header.writer is None
    c = pack.task("c")
    assert (c.layout, c.encodings, c.nnz, c.nbytes) == ("golomb", ("golomb",) * 3, (4, 2, 0), (3, 2, 1))
    with safetensors.safe_open(GOLDEN_V2, framework="numpy") as f:
        raw = {k: f.get_tensor(k).tobytes().hex() for k in ("t2.0", "t2.1", "t2.2")}
    # fc.weight: kept 0 1 2 7, gaps 0 0 0 4, M = 1 (8 gap bits; M = 2 takes 10) | complement 0 |
    # gamma(1) 1 | gamma(m + 1 = 5) 00101 | signs - - + - 0010 | quotients 1 1 1 00001 | padding
    assert raw["t2.0"] == "4a5c20"  # 0100101 0010 11100001 00000
    # fc.bias: 2 of 3 kept -> complement 1, the dropped entry 1 is coded: gap 1, M = 1 |
    # gamma(1) 1 | gamma(2) 010 | signs - + 01 | quotient 01 | padding
    assert raw["t2.1"] == "d280"  # 11010 01 01 0000000
    assert raw["t2.2"] == "60"  # nothing kept: 0 | gamma(1) 1 | gamma(1) 1 | padding
    # the same switches as task a (SASS), bit for bit
    a, golomb = pack.load_task("a"), pack.load_task("c")
    for name in a:
        assert torch.equal(a[name].mask, golomb[name].mask) and torch.equal(a[name].positive, golomb[name].positive)
        assert a[name].scale == golomb[name].scale
    # version-1 packs are still read by this version
    assert SwitchPack(GOLDEN).header.format_version == 1


@pytest.mark.parametrize("layout", ["auto", "golomb", "sass", "bitmap"])
def test_repack_is_lossless_and_checksummed(tmp_path, model, layout):
    from tswitch.pack import repack

    path = make_pack(tmp_path, model, "sass", names=("a", "b", "c"))
    before = SwitchPack(path)
    out = str(tmp_path / "out.tsw")
    header = repack(path, out, layout)
    after = SwitchPack(out)
    assert after.header == header and after.tasks == before.tasks
    assert after.header.format_version == (2 if any("golomb" in t.encodings for t in header.tasks) else 1)
    for name in before.tasks:
        old, new = before.load_task(name), after.load_task(name)  # verifies each task's checksum
        for k in FLOATING:
            assert torch.equal(old[k].mask, new[k].mask) and torch.equal(old[k].positive, new[k].positive)
            assert old[k].scale == new[k].scale
        entry = after.task(name)
        assert entry.layout == layout and entry.nnz == before.task(name).nnz
        if layout != "auto":
            assert entry.encodings == (layout,) * len(FLOATING)
        else:
            assert entry.total_bytes <= before.task(name).total_bytes
    after.check_base(model[0])


def test_new_packs_name_the_tswitch_version_that_wrote_them(tmp_path, model):
    import tswitch
    from tswitch.report import format_report, pack_report

    pack = SwitchPack(make_pack(tmp_path, model))
    assert pack.header.writer == f"tswitch {tswitch.__version__}"
    report = pack_report(pack)
    assert report["writer"] == pack.header.writer and pack.header.writer in format_report(report)
