"""The dynamic-merge engine against slow obvious references, on a toy MLP adapter.

The adapter here is a stand-in for the real ones in tswitch.models: an MLP with a BatchNorm1d
(so buffers are part of the task vectors), run through torch.func.functional_call on replicas
from a ModulePool, as the adapter interface prescribes.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from tswitch.core.binary import b_approx
from tswitch.core.task_vector import TaskVector
from tswitch.merging import AutoSwitch, DynamicMergeEngine, PackedSwitches, tswitch_merge
from tswitch.merging.packed import PackedSwitch, signed_lut
from tswitch.merging.packed import pack_bool_tensor as pack_bits
from tswitch.merging.packed import unpack_bool_tensor as unpack_bits
from tswitch.models.base import Head, ModelAdapter, ModulePool
from tswitch.pack import SwitchPack, create_pack, encode_task
from tswitch.routing import KNNRouter

TASKS = ("cars", "digits", "sentiment")
ALPHA = 0.7


class ToyAdapter(ModelAdapter):
    """``x -> Linear -> BatchNorm1d -> ReLU -> Linear`` on float vectors."""

    name = "toy-mlp"
    modality = "vector"

    def __init__(self, dim_in: int = 6, hidden: int = 16, dim_out: int = 8, seed: int = 0, pool: int = 2):
        torch.manual_seed(seed)
        self.module = nn.Sequential(
            nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim_out)
        )
        with torch.no_grad():  # running statistics that matter in eval mode
            self.module[1].running_mean.normal_()
            self.module[1].running_var.uniform_(0.5, 2.0)
        self._state = {k: v.detach() for k, v in self.module.state_dict().items()}
        self._pool = ModulePool(self.module, size=pool)
        self.dim_in = dim_in

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._state)

    def preprocess(self, inputs) -> dict[str, torch.Tensor]:
        return {"x": torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in inputs])}

    def features(self, batch, weights=None) -> torch.Tensor:
        state = self._state if weights is None else weights
        with self._pool.acquire() as module:  # functional_call swaps tensors on the module
            return functional_call(module, dict(state), (batch["x"],))


def task_vectors(adapter: ToyAdapter, seed: int = 1) -> dict[str, TaskVector]:
    g = torch.Generator().manual_seed(seed)
    base = adapter.state_dict()
    return {
        t: TaskVector(
            {k: 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items() if torch.is_floating_point(v)}
        )
        for t in TASKS
    }


def heads(adapter: ToyAdapter, seed: int = 2) -> dict[str, Head]:
    g = torch.Generator().manual_seed(seed)
    d = adapter.features(adapter.preprocess([[0.0] * adapter.dim_in])).shape[1]
    return {
        t: Head(torch.randn(c, d, generator=g), torch.randn(c, generator=g), tuple(map(str, range(c))))
        for t, c in zip(TASKS, (3, 10, 2))
    }


def switches_of(tvs: dict[str, TaskVector]):
    return {t: {k: b_approx(v, ALPHA) for k, v in tv.items()} for t, tv in tvs.items()}


@pytest.fixture(scope="module")
def setup():
    adapter = ToyAdapter()
    base = adapter.state_dict()
    tvs = task_vectors(adapter)
    switches = switches_of(tvs)
    return adapter, base, switches, heads(adapter)


def make_engine(setup, cache_size: int = 16) -> DynamicMergeEngine:
    adapter, base, switches, hs = setup
    return DynamicMergeEngine(adapter, base, PackedSwitches.from_switches(switches), hs, cache_size=cache_size)


def slow_merge(base, switches, weights) -> dict[str, torch.Tensor]:
    """``theta_0 + sum_k w_k · B-Approx(tau_k).reconstruct()``, the obvious way."""
    out = {}
    for name, t in base.items():
        if not torch.is_floating_point(t):
            out[name] = t
            continue
        total = t.clone()
        for w, task in zip(weights, TASKS):
            total = total + w * switches[task][name].reconstruct()
        out[name] = total
    return out


def assert_states_close(a, b, atol=1e-6):
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


# -- bit packing -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 63, 1000])
def test_pack_unpack_round_trip(n):
    bits = torch.rand(n, generator=torch.Generator().manual_seed(n)) < 0.4
    packed = pack_bits(bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-n // 8)
    assert torch.equal(unpack_bits(packed, n), bits)
    assert packed.numpy().tobytes() == np.packbits(bits.numpy()).tobytes()  # the codec's bit order


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 3), (2, 3, 5)])
def test_packed_switch_round_trip(shape):
    tau = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    sw = b_approx(tau, 0.5)
    back = PackedSwitch.from_tswitch(sw).to_tswitch()
    assert torch.equal(back.mask, sw.mask) and torch.equal(back.positive, sw.positive)
    assert back.scale == sw.scale
    out = torch.zeros(tau.numel())
    PackedSwitch.from_tswitch(sw).add_to(out, 2.0, signed_lut())
    torch.testing.assert_close(out.view(shape), 2.0 * sw.reconstruct())


def test_signed_lut_matches_bits():
    lut = signed_lut()
    for code in (0, 0xFF00, 0xFFFF, 0xA5_21, 0x0F_F0):
        mask = [(code >> (15 - i)) & 1 for i in range(8)]
        pos = [(code >> (7 - i)) & 1 for i in range(8)]
        assert lut[code].tolist() == [float(m * (1 if p else -1)) for m, p in zip(mask, pos)]


def test_packed_memory_is_under_an_eighth_of_dense():
    adapter = ToyAdapter(dim_in=32, hidden=128, dim_out=64)
    packed = PackedSwitches.from_switches(switches_of(task_vectors(adapter)))
    stored = sum(
        e.mask.numel() * e.mask.element_size() + e.positive.numel() * e.positive.element_size() + 4  # the float32 scale
        for items in packed.entries.values()
        for e in items.values()
    )
    dense = sum(4 * v.numel() for tv in task_vectors(adapter).values() for v in tv.vector.values())
    assert packed.nbytes() == stored and packed.dense_nbytes() == dense
    assert 8 * stored < dense
    for items in packed.entries.values():
        for e in items.values():
            assert e.mask.dtype == e.positive.dtype == torch.uint8


# -- merged weights ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "weights", [[0.3, 0.0, 0.7], [0.5, 0.25, 0.25], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-0.4, 0.0, 1.2]]
)
def test_merged_weights_equal_slow_reference(setup, weights):
    adapter, base, switches, _ = setup
    merged = make_engine(setup).merged_weights(weights)
    assert_states_close(merged, slow_merge(base, switches, weights))


def test_merged_weights_match_tswitch_merge(setup):
    _, base, switches, _ = setup
    w = [0.2, 0.5, 0.3]
    delta = tswitch_merge([switches[t] for t in TASKS], w)
    assert_states_close(make_engine(setup).merged_weights(w), delta.apply_to(base))


@pytest.mark.parametrize("k", range(len(TASKS)))
def test_one_hot_weights_reproduce_tswitch(setup, k):
    adapter, base, switches, _ = setup
    onehot = [1.0 if j == k else 0.0 for j in range(len(TASKS))]
    expected = TaskVector({n: sw.reconstruct() for n, sw in switches[TASKS[k]].items()}).apply_to(base)
    engine = make_engine(setup)
    assert_states_close(engine.merged_weights(onehot), expected)
    x = {"x": torch.randn(5, 6)}
    out = engine.run(x, torch.tensor([onehot] * 5))
    torch.testing.assert_close(out.features, adapter.features(x, expected), atol=1e-6, rtol=0)
    assert out.routed_task.tolist() == [k] * 5


def test_dense_entries(setup):
    adapter, base, switches, hs = setup
    g = torch.Generator().manual_seed(5)
    # biases kept dense (float16-representable values, so float16 storage is exact)
    dense = {
        t: {
            n: (0.1 * torch.randn(sw.shape, generator=g)).half().float() if n.endswith("bias") else sw
            for n, sw in switches[t].items()
        }
        for t in TASKS
    }
    packed = PackedSwitches.from_switches(dense)
    assert packed.entries["cars"]["0.bias"].values.dtype == torch.float16
    engine = DynamicMergeEngine(adapter, base, packed, hs)
    w = [0.5, 0.0, 0.5]
    expected = {
        n: v
        if not torch.is_floating_point(v)
        else v
        + sum(
            wk * (d[n] if isinstance(d[n], torch.Tensor) else d[n].reconstruct())
            for wk, d in zip(w, (dense[t] for t in TASKS))
        )
        for n, v in base.items()
    }
    assert_states_close(engine.merged_weights(w), expected)


def test_from_pack_matches_from_switches(setup, tmp_path):
    adapter, base, switches, hs = setup
    from tswitch.pack import tensor_specs

    tvs = task_vectors(adapter)
    specs = tensor_specs(base)
    path = str(tmp_path / "toy.tsw")
    create_pack(path, base, [encode_task(t, tvs[t], specs, ALPHA) for t in TASKS])
    packed = PackedSwitches.from_pack(SwitchPack(path), tasks=["sentiment", "cars"])
    assert packed.tasks == ("sentiment", "cars")
    direct = PackedSwitches.from_switches(switches)
    for t in packed.tasks:
        for n, e in packed.entries[t].items():
            d = direct.entries[t][n]
            assert torch.equal(e.mask, d.mask) and torch.equal(e.positive, d.positive)
            assert e.scale == pytest.approx(d.scale, rel=1e-6)  # the pack stores float32 scales
    with pytest.raises(ValueError, match="unknown tasks"):
        PackedSwitches.from_pack(SwitchPack(path), tasks=["nope"])


def test_base_and_module_never_mutated(setup):
    adapter, base, switches, hs = setup
    base_before = {k: v.clone() for k, v in base.items()}
    module_before = {k: v.clone() for k, v in adapter.module.state_dict().items()}
    engine = make_engine(setup)
    merged = engine.merged_weights([0.5, 0.5, 0.0])
    engine.run({"x": torch.randn(4, 6)}, torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0], [0, 0, 1.0]]))
    for k, v in merged.items():
        if torch.is_floating_point(v):
            assert v.data_ptr() != base[k].data_ptr(), k  # covered tensors are new
    for k, v in base.items():
        assert torch.equal(v, base_before[k]), k
    for k, v in adapter.module.state_dict().items():
        assert torch.equal(v, module_before[k]), k


def test_validation(setup):
    adapter, base, switches, hs = setup
    engine = make_engine(setup)
    with pytest.raises(ValueError, match="got 2 weights for 3 tasks"):
        engine.merged_weights([1.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        engine.merged_weights([float("nan"), 0.0, 0.0])
    with pytest.raises(ValueError, match=r"weights must be \(B, 3\)"):
        engine.run({"x": torch.zeros(2, 6)}, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="batch size 3"):
        engine.run({"x": torch.zeros(2, 6)}, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="no head"):
        DynamicMergeEngine(adapter, base, PackedSwitches.from_switches(switches), {"cars": hs["cars"]})
    with pytest.raises(ValueError, match="lacks"):
        DynamicMergeEngine(
            adapter, {k: v for k, v in base.items() if k != "0.weight"}, PackedSwitches.from_switches(switches), hs
        )
    with pytest.raises(ValueError, match="cache_size"):
        make_engine(setup, cache_size=-1)


# -- cache -------------------------------------------------------------------------------------
def test_cache_is_bounded_and_hit_on_repeat(setup):
    engine = make_engine(setup, cache_size=2)
    a = engine.merged_weights([1.0, 0.0, 0.0])
    assert tuple(engine.cache_info())[:4] == (0, 1, 1, 2)
    a2 = engine.merged_weights([1.0, 0.0, 0.0])
    a3 = engine.merged_weights(torch.tensor([1.0 + 1e-9, -0.0, 0.0], dtype=torch.float64))  # same key
    assert tuple(engine.cache_info())[:4] == (2, 1, 1, 2)
    assert all(a[k] is a2[k] is a3[k] for k in a)
    engine.merged_weights([0.0, 1.0, 0.0])  # room: cached
    engine.merged_weights([0.0, 0.0, 1.0])  # full: used once, against 3 uses of the LRU entry: not cached
    assert engine.cache_info().size == 2
    engine.merged_weights([1.0, 0.0, 0.0])
    assert tuple(engine.cache_info())[:4] == (3, 3, 2, 2)  # the popular vector stayed
    engine.merged_weights([0.0, 0.0, 1.0])  # 2 uses against the LRU entry's 1 ([0, 1, 0]): it replaces it
    engine.merged_weights([0.0, 0.0, 1.0])
    engine.merged_weights([0.0, 1.0, 0.0])
    assert tuple(engine.cache_info())[:4] == (4, 5, 2, 2)


def test_a_cycle_over_more_vectors_than_the_cache_keeps_hitting_and_one_offs_never_flush_it(setup):
    engine = make_engine(setup, cache_size=4)
    cycle = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]
    for _ in range(3):
        for w in cycle:
            engine.merged_weights(w)
    # plain LRU would hit nothing here (each vector evicted before it comes back); 4 of 6 stay cached
    assert engine.cache_info().hits == 2 * 4 and engine.cache_info().size == 4
    hot = [[1.0, 0.0, 0.0]] * 5
    for w in hot:
        engine.merged_weights(w)
    hits = engine.cache_info().hits
    for i in range(1, 31):  # a burst of vectors each used once (none of them 0.5)
        engine.merged_weights([i / 31, 1 - i / 31, 0.0])
    engine.merged_weights([1.0, 0.0, 0.0])
    assert engine.cache_info().hits == hits + 1  # still cached


def test_use_counts_age_so_a_new_favourite_gets_in(setup):
    from tswitch.merging.admission import AGE_EVERY

    engine = make_engine(setup, cache_size=1)
    for _ in range(5 * AGE_EVERY):
        engine.merged_weights([1.0, 0.0, 0.0])  # an old favourite: 50 uses
    uses = 0
    cached = False
    while uses < 100:
        uses += 1
        engine.merged_weights([0.0, 1.0, 0.0])
        with engine._lock:
            cached = [0.0, 1.0, 0.0] in [list(k) for k in engine._cache]
        if cached:
            break
    # counts halve every AGE_EVERY uses: without it the newcomer would need 51 uses
    assert cached and uses <= 3 * AGE_EVERY, uses


def test_use_counts_halve_keep_the_most_recent_keys_and_reject_bad_settings():
    from tswitch.merging.admission import UseCounts

    uses = UseCounts(age_every=4, keep=2)
    uses.count(["a", "a", "a"])
    assert uses.get("a") == 3 and uses.get("b") == 0
    uses.count(["b"])  # the fourth use: every count halves
    assert (uses.get("a"), uses.get("b")) == (1, 0)
    uses.count(["b", "c"])  # only the 2 most recent keys are kept
    assert (uses.get("a"), uses.get("b"), uses.get("c")) == (0, 1, 1)
    uses.clear()
    assert uses.get("c") == 0
    with pytest.raises(ValueError, match="age_every"):
        UseCounts(age_every=0)


def test_a_cached_vector_is_bound_on_its_second_forward_and_dropped_with_its_cache_entry(setup):
    _, base, switches, hs = setup

    class Binding(ToyAdapter):
        binds = 0

        def bind(self, weights):
            Binding.binds += 1
            return super().bind(weights)

    engine = DynamicMergeEngine(Binding(), base, PackedSwitches.from_switches(switches), hs, cache_size=1)
    x = {"x": torch.randn(3, 6, generator=torch.Generator().manual_seed(4))}
    one, two = torch.tensor([[1.0, 0.0, 0.0]] * 3), torch.tensor([[0.0, 1.0, 0.0]] * 3)
    outs = [engine.run(x, one) for _ in range(3)]
    assert Binding.binds == 1  # first forward: merged, run as a dict; second: bound; third: reused
    assert all(torch.equal(o.features, outs[0].features) for o in outs)
    for _ in range(4):
        engine.run(x, two)  # the fourth use outnumbers the first vector's three: it replaces it
    assert Binding.binds == 1
    assert torch.equal(engine.run(x, two).features, engine.run(x, two).features) and Binding.binds == 2
    assert torch.equal(engine.run(x, one).features, outs[0].features)  # evicted with its bound form
    assert Binding.binds == 2
    engine.clear_cache()
    engine.run(x, two)
    assert Binding.binds == 2  # a cleared cache forgets the bound form: merged again, run as a dict
    engine.run(x, two)
    assert Binding.binds == 3


def test_cache_size_zero_still_correct(setup):
    _, base, switches, _ = setup
    engine = make_engine(setup, cache_size=0)
    for _ in range(2):
        assert_states_close(engine.merged_weights([0.3, 0.3, 0.4]), slow_merge(base, switches, [0.3, 0.3, 0.4]))
    assert tuple(engine.cache_info())[:4] == (0, 2, 0, 0)


def test_concurrent_misses_on_one_key_merge_once(setup):
    engine = make_engine(setup)
    calls, slow = [], engine._merge
    gate = threading.Event()

    def counted(key):
        calls.append(key)
        gate.wait(5)  # hold the first computation until every thread has asked
        return slow(key)

    engine._merge = counted
    out = [None] * 8
    threads = [
        threading.Thread(target=lambda i=i: out.__setitem__(i, engine.merged_weights([0.5, 0.5, 0.0])))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    while engine.cache_info().hits + engine.cache_info().misses < 8:
        threading.Event().wait(0.01)
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and tuple(engine.cache_info())[:2] == (7, 1)
    assert all(o["0.weight"] is out[0]["0.weight"] for o in out)


# -- batched forwards --------------------------------------------------------------------------
MIXED_WEIGHTS = torch.tensor(
    [[1.0, 0, 0], [0, 0.7, 0.3], [1.0, 0, 0], [0, 0, 1.0], [0, 0.7, 0.3], [0.2, 0.4, 0.4], [0, 0, 1.0]]
)


def test_grouping_equals_one_by_one(setup):
    adapter, base, switches, hs = setup
    engine = make_engine(setup)
    x = {"x": torch.randn(len(MIXED_WEIGHTS), 6, generator=torch.Generator().manual_seed(7))}
    out = engine.run(x, MIXED_WEIGHTS)
    assert out.groups == 4 and out.features.shape == (7, 8)
    for i, w in enumerate(MIXED_WEIGHTS):
        one = engine.run({"x": x["x"][i : i + 1]}, w[None])
        torch.testing.assert_close(out.features[i], one.features[0], atol=1e-6, rtol=0)
        slow = adapter.features({"x": x["x"][i : i + 1]}, slow_merge(base, switches, w.tolist()))
        torch.testing.assert_close(out.features[i], slow[0], atol=1e-5, rtol=0)
        for t in TASKS:
            torch.testing.assert_close(out.logits[t][i], hs[t](slow)[0], atol=1e-4, rtol=0)
    assert {t: tuple(v.shape) for t, v in out.logits.items()} == {
        "cars": (7, 3),
        "digits": (7, 10),
        "sentiment": (7, 2),
    }
    assert out.routed_task.tolist() == [0, 1, 0, 2, 1, 1, 2]  # argmax; the tie in row 5 goes to the first
    for i, p in enumerate(out.probs_routed):
        torch.testing.assert_close(p, torch.softmax(out.logits[TASKS[out.routed_task[i]]][i], -1))
        assert p.sum().item() == pytest.approx(1.0)


def test_routed_task_override(setup):
    engine = make_engine(setup)
    out = engine.run(
        {"x": torch.randn(2, 6)}, torch.tensor([[0.5, 0.5, 0], [0.5, 0.5, 0]]), routed_task=torch.tensor([1, 0])
    )
    assert out.routed_task.tolist() == [1, 0] and out.probs_routed[0].numel() == 10
    with pytest.raises(ValueError, match="routed_task"):
        engine.run({"x": torch.randn(1, 6)}, torch.tensor([[1.0, 0, 0]]), routed_task=torch.tensor([3]))


CENTRES = 8.0 * torch.eye(6)[:3]  # one input cluster per task


def clustered_router(adapter, g: torch.Generator) -> KNNRouter:
    exemplars = torch.cat([CENTRES[t] + 0.3 * torch.randn(20, 6, generator=g) for t in range(3)])
    feats = adapter.route_features({"x": exemplars})
    # the router lists the tasks in another order than the engine: columns must be matched by name
    order = [2, 0, 1]
    return KNNRouter(
        feats, torch.tensor([order.index(t) for t in range(3)]).repeat_interleave(20), [TASKS[i] for i in order], k=5
    )


def test_auto_switch_routes_a_mixed_batch(setup):
    adapter, base, switches, hs = setup
    engine = make_engine(setup)
    g = torch.Generator().manual_seed(11)
    router = clustered_router(adapter, g)
    truth = torch.tensor([1, 2, 0, 0, 2, 1])
    x = {"x": CENTRES[truth] + 0.3 * torch.randn(6, 6, generator=g)}
    out, route = AutoSwitch(engine, router).predict(x)
    assert out.routed_task.tolist() == truth.tolist()
    assert [route.task_names[i] for i in route.routed_task] == [TASKS[i] for i in truth]
    onehot = engine.run(x, torch.nn.functional.one_hot(truth, 3).float())
    torch.testing.assert_close(out.features, onehot.features, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="differ"):
        AutoSwitch(engine, KNNRouter(router.features, torch.zeros(60, dtype=torch.long), ["other"], k=5))


def test_concurrent_requests_equal_sequential(setup):
    # a small cache so that threads keep evicting each other's entries and recomputing them
    engine = make_engine(setup, cache_size=3)
    g = torch.Generator().manual_seed(13)
    requests = []
    for i in range(8):
        w = torch.rand(5, 3, generator=g)
        w[:, i % 3] += 2.0 * (i % 2)  # different routes per thread, some repeated rows
        w = torch.where(w > 0.5, w, torch.zeros(()))
        w[2] = w[0]
        requests.append(({"x": torch.randn(5, 6, generator=g)}, w))
    expected = [engine.run(x, w) for x, w in requests]
    errors, results = [], [[None] * 20 for _ in requests]

    def worker(i):
        try:
            x, w = requests[i]
            for it in range(20):
                results[i][it] = engine.run(x, w)
        except BaseException as exc:  # surfaced below: an assert in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, exp in enumerate(expected):
        for out in results[i]:
            torch.testing.assert_close(out.features, exp.features, atol=1e-6, rtol=0)
            for t in TASKS:
                torch.testing.assert_close(out.logits[t], exp.logits[t], atol=1e-6, rtol=0)
            assert torch.equal(out.routed_task, exp.routed_task)
    info = engine.cache_info()
    assert info.size <= 3 and info.hits + info.misses > 8 * 20


def test_concurrent_auto_switch_equals_sequential(setup):
    adapter = setup[0]
    engine = make_engine(setup, cache_size=2)
    g = torch.Generator().manual_seed(17)
    auto = AutoSwitch(engine, clustered_router(adapter, g))
    requests = []
    for i in range(8):  # each thread its own mix of clusters, some with points between clusters
        truth = torch.randint(0, 3, (4,), generator=g)
        x = CENTRES[truth] + 0.3 * torch.randn(4, 6, generator=g)
        x[0] = 0.5 * (CENTRES[i % 3] + CENTRES[(i + 1) % 3])
        requests.append({"x": x})
    expected = [auto.predict(x) for x in requests]
    errors, results = [], [[None] * 20 for _ in requests]

    def worker(i):
        try:
            for it in range(20):
                results[i][it] = auto.predict(requests[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({tuple(map(tuple, out.weights.tolist())) for out, _ in expected}) > 1
    for (exp, exp_route), runs in zip(expected, results):
        for out, route in runs:
            assert torch.equal(route.neighbours, exp_route.neighbours)
            assert torch.equal(out.routed_task, exp.routed_task)
            torch.testing.assert_close(out.features, exp.features, atol=1e-6, rtol=0)


# -- strategies: the multi-tenant forward and the auto policy ------------------------------------
def test_every_strategy_gives_the_merged_models_answer(setup):
    adapter, base, switches, hs = setup
    x = {"x": torch.randn(len(MIXED_WEIGHTS), 6, generator=torch.Generator().manual_seed(7))}
    expected = make_engine(setup).run(x, MIXED_WEIGHTS)
    for strategy in ("tenant", "auto"):
        engine = DynamicMergeEngine(adapter, base, PackedSwitches.from_switches(switches), hs, strategy=strategy)
        out = engine.run(x, MIXED_WEIGHTS)
        assert engine.unsupported is None  # eval-mode BatchNorm1d and Linear have per-sample rules
        torch.testing.assert_close(out.features, expected.features, atol=1e-5, rtol=0)
        for t in TASKS:
            torch.testing.assert_close(out.logits[t], expected.logits[t], atol=1e-5, rtol=0)
        assert torch.equal(out.routed_task, expected.routed_task) and out.groups == expected.groups


def test_auto_merges_a_weight_vector_on_its_second_sight(setup):
    adapter, base, switches, hs = setup
    engine = DynamicMergeEngine(adapter, base, PackedSwitches.from_switches(switches), hs, strategy="auto")
    x = {"x": torch.randn(2, 6, generator=torch.Generator().manual_seed(3))}
    w = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    first = engine.run(x, w)
    assert engine.cache_info().size == 0  # first sight: one multi-tenant forward, nothing merged
    second = engine.run(x, w)
    assert engine.cache_info().size == 2  # second sight: both vectors merged and cached
    third = engine.run(x, w)
    assert engine.cache_info().hits >= 2
    for out in (second, third):
        torch.testing.assert_close(out.features, first.features, atol=1e-5, rtol=0)


def test_cache_is_bounded_in_bytes(setup):
    adapter, base, switches, hs = setup
    one = sum(v.numel() * v.element_size() for v in base.values() if v.is_floating_point())
    engine = DynamicMergeEngine(
        adapter, base, PackedSwitches.from_switches(switches), hs, cache_size=16, cache_bytes=2 * one + 1
    )
    for w in ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0]):
        engine.merged_weights(w)
    info = engine.cache_info()
    assert info.size == 2 and info.nbytes == 2 * one and info.max_bytes == 2 * one + 1
    with pytest.raises(ValueError, match="cache_bytes"):
        DynamicMergeEngine(adapter, base, PackedSwitches.from_switches(switches), hs, cache_bytes=-1)
    with pytest.raises(ValueError, match="strategy"):
        DynamicMergeEngine(adapter, base, PackedSwitches.from_switches(switches), hs, strategy="fast")


@pytest.mark.parametrize("strategy", ["tenant", "auto"])
def test_concurrent_multi_tenant_requests_equal_sequential(setup, strategy):
    adapter, base, switches, hs = setup
    engine = DynamicMergeEngine(
        adapter, base, PackedSwitches.from_switches(switches), hs, strategy=strategy, cache_size=2
    )
    g = torch.Generator().manual_seed(17)
    requests = [
        ({"x": torch.randn(4, 6, generator=g)}, torch.rand(4, 3, generator=g).round(decimals=1)) for _ in range(6)
    ]
    expected = [engine.run(x, w).features for x, w in requests]
    errors, results = [], [[None] * 10 for _ in requests]

    def worker(i):
        try:
            for it in range(10):
                results[i][it] = engine.run(*requests[i]).features
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, exp in enumerate(expected):
        for out in results[i]:
            torch.testing.assert_close(out, exp, atol=1e-5, rtol=0)


class AttentionAdapter(ToyAdapter):
    """``nn.MultiheadAttention`` reads its packed ``in_proj_weight`` inside one fused function, which
    returns a tuple: no per-sample rule exists for it."""

    name = "toy-attention"

    def __init__(self):
        torch.manual_seed(4)
        self.module = nn.MultiheadAttention(6, 2, batch_first=True).eval()
        self._state = {k: v.detach() for k, v in self.module.state_dict().items()}
        self._pool = ModulePool(self.module, size=2)
        self.dim_in = 6

    def features(self, batch, weights=None) -> torch.Tensor:
        x = batch["x"].view(-1, 1, 6)
        state = self._state if weights is None else weights
        with self._pool.acquire() as module:
            return functional_call(module, dict(state), (x, x, x))[0].flatten(1)


def test_an_operation_without_a_per_sample_rule_falls_back_to_merging():
    from tswitch.merging.tenants import UnsupportedOp

    adapter = AttentionAdapter()
    base = adapter.state_dict()
    g = torch.Generator().manual_seed(0)
    switches = {t: {k: b_approx(0.1 * torch.randn(v.shape, generator=g), 0.7) for k, v in base.items()} for t in TASKS}
    hs = {t: Head(torch.randn(2, 6, generator=g), torch.zeros(2), ("a", "b")) for t in TASKS}
    packed = PackedSwitches.from_switches(switches)
    x = {"x": torch.randn(4, 6, generator=g)}
    w = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0]])
    with pytest.raises(UnsupportedOp, match="multi_head_attention_forward"):
        DynamicMergeEngine(adapter, base, packed, hs, strategy="tenant").run(x, w)
    auto = DynamicMergeEngine(adapter, base, packed, hs, strategy="auto")
    out = auto.run(x, w)
    assert auto.unsupported and "per-sample weight" in auto.unsupported
    expected = DynamicMergeEngine(adapter, base, packed, hs, strategy="merge").run(x, w)
    torch.testing.assert_close(out.features, expected.features, atol=1e-6, rtol=0)
    for i in range(4):  # and merging is the reference: each sample through its own merged weights
        slow = adapter.features({"x": x["x"][i : i + 1]}, slow_merge(base, switches, w[i].tolist()))
        torch.testing.assert_close(out.features[i], slow[0], atol=1e-5, rtol=0)


def test_a_dense_budget_decodes_dense_ish_deltas_up_to_its_bytes_and_changes_no_answer():
    """``dense_bytes`` (suite evaluation) keeps deltas too dense for a CSR as float32 while they fit,
    in task order; the rest stay packed (streamed). Every strategy still gives the merged model."""
    from tswitch.merging.deltas import DenseRows, Streamed

    adapter = ToyAdapter(dim_in=64, hidden=128)
    base, hs = adapter.state_dict(), heads(adapter)
    packed = PackedSwitches.from_switches(switches_of(task_vectors(adapter)))
    big = "0.weight"  # 128 x 64 at density 0.3: neither a CSR nor small
    one = 4 * base[big].numel()
    x = {"x": torch.randn(len(MIXED_WEIGHTS), 64, generator=torch.Generator().manual_seed(5))}
    expected = DynamicMergeEngine(adapter, base, packed, hs).run(x, MIXED_WEIGHTS)
    for strategy in ("merge", "tenant", "auto"):
        for budget, n_dense in ((0, 0), (one, 1), (2 * one + 3, 2), (1 << 30, 3)):
            engine = DynamicMergeEngine(adapter, base, packed, hs, strategy=strategy, dense_bytes=budget)
            # decoded unless packed is cheaper: merging without a budget, or auto on mostly streamed switches
            decoded = {"merge": budget > 0, "tenant": True, "auto": engine.unsupported is None}[strategy]
            assert bool(engine._deltas) == decoded
            if strategy == "auto" and n_dense == 3:
                assert engine.unsupported is None  # with every delta decoded, nothing is streamed
            if engine._deltas:
                forms = [engine._deltas[t][big] for t in TASKS]
                assert [isinstance(f, DenseRows) for f in forms] == [True] * n_dense + [False] * (3 - n_dense)
                assert all(isinstance(f, Streamed) for f in forms[n_dense:])
                assert engine.nbytes() >= n_dense * one
            out = engine.run(x, MIXED_WEIGHTS)
            torch.testing.assert_close(out.features, expected.features, atol=1e-5, rtol=0)
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="dense_bytes"):
            DynamicMergeEngine(adapter, base, packed, hs, dense_bytes=bad)


def test_buffer_rows_is_an_engine_setting_that_changes_no_answer_and_touches_no_other_engine(monkeypatch):
    """``buffer_rows`` picks per engine which groups get a layer merged (no module global: engines
    with different settings live side by side); every setting gives the merged model."""
    from tswitch.merging import tenants

    adapter = ToyAdapter(dim_in=64, hidden=128)
    base, hs = adapter.state_dict(), heads(adapter)
    sparse = {t: {k: b_approx(v, 0.97) for k, v in tv.items()} for t, tv in task_vectors(adapter).items()}
    packed = PackedSwitches.from_switches(sparse)  # 3% kept: CSR deltas, so groups may skip merging
    x = {"x": torch.randn(len(MIXED_WEIGHTS), 64, generator=torch.Generator().manual_seed(6))}
    expected = DynamicMergeEngine(adapter, base, packed, hs).run(x, MIXED_WEIGHTS)
    merges: list[int] = []
    real = tenants._merged
    monkeypatch.setattr(tenants, "_merged", lambda *a, **k: merges.append(1) or real(*a, **k))
    engines = {
        rows: DynamicMergeEngine(adapter, base, packed, hs, strategy="tenant", buffer_rows=rows)
        for rows in (0, 1 << 40)
    }
    counts = {}
    for rows, engine in engines.items():
        merges.clear()
        out = engine.run(x, MIXED_WEIGHTS)
        counts[rows] = len(merges)
        torch.testing.assert_close(out.features, expected.features, atol=1e-5, rtol=0)
    assert counts[0] > 0 and counts[1 << 40] == 0
    assert tenants.BUFFER_MIN_ROWS == 96 and DynamicMergeEngine(adapter, base, packed, hs).buffer_rows == 96
    for bad in (-1, True, 2.5):
        with pytest.raises(ValueError, match="buffer_rows"):
            DynamicMergeEngine(adapter, base, packed, hs, buffer_rows=bad)
