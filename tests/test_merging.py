"""Merge methods against hand-computed toy examples, plus registry and validation checks."""

from __future__ import annotations

import math
import re

import pytest
import torch

from tswitch.core.binary import TSwitch, b_approx
from tswitch.core.task_vector import TaskVector
from tswitch.merging import (
    dare,
    dare_ties,
    emr_components,
    emr_merging,
    get_method,
    list_methods,
    norm_rescaled_average,
    pspar_merge,
    sparse_task_arithmetic,
    tall_mask_components,
    tall_masks,
    task_arithmetic,
    ties,
    tswitch_merge,
    weight_average,
)


def tv(**tensors) -> TaskVector:
    return TaskVector({k: torch.tensor(v, dtype=torch.float32) for k, v in tensors.items()})


def assert_tv(actual: TaskVector, expected: dict, atol: float = 1e-6) -> None:
    assert set(actual.keys()) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(actual[k], torch.as_tensor(v, dtype=torch.float32), atol=atol, rtol=0)


# Three toy task vectors of 5 entries, shared by several tests.
T1 = dict(w=[1.0, -2.0, 3.0, 0.0, 4.0])
T2 = dict(w=[2.0, 1.0, -1.0, -3.0, 2.0])
T3 = dict(w=[-1.0, -1.0, 2.0, 1.0, -5.0])


# -- registry ----------------------------------------------------------------------------------
EXPECTED = {
    "weight_average": ("2203.05482", "static"),
    "task_arithmetic": ("2212.04089", "static"),
    "ties": ("2306.01708", "static"),
    "dare": ("2311.03099", "static"),
    "dare_ties": ("2311.03099", "static"),
    "pspar_merge": ("2412.00054", "static"),
    "emr_merging": ("2405.17461", "dynamic"),
    "tall_masks": ("2405.07813", "dynamic"),
    "tswitch": ("2412.00054", "dynamic"),
}


def test_registry_lists_every_method_with_its_paper():
    methods = {m.name: m for m in list_methods()}
    assert set(methods) == set(EXPECTED)
    for name, (paper, kind) in EXPECTED.items():
        m = methods[name]
        assert (m.paper, m.kind) == (paper, kind)
        assert re.fullmatch(r"\d{4}\.\d{5}", m.paper)
        assert m.url == f"https://arxiv.org/abs/{paper}"
        assert m.description and "\n" not in m.description
    assert [m.name for m in list_methods("dynamic")] == ["emr_merging", "tall_masks", "tswitch"]
    assert get_method("ties").fn is ties
    assert get_method("tswitch").fn is tswitch_merge


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown merge method 'tie'; valid: .*dare.*ties.*tswitch"):
        get_method("tie")
    with pytest.raises(ValueError, match="kind"):
        list_methods("hybrid")


# -- static methods ----------------------------------------------------------------------------
def test_weight_average():
    # (T1 + T2) / 2 = [3, -1, 2, -3, 6] / 2
    assert_tv(weight_average([tv(**T1), tv(**T2)]), dict(w=[1.5, -0.5, 1.0, -1.5, 3.0]))


def test_weight_average_equals_averaging_finetuned_weights():
    theta0 = {"w": torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])}
    fts = [{"w": theta0["w"] + tv(**t)["w"]} for t in (T1, T2, T3)]
    merged = weight_average([TaskVector.from_state_dicts(theta0, ft) for ft in fts]).apply_to(theta0)
    torch.testing.assert_close(merged["w"], torch.stack([ft["w"] for ft in fts]).mean(0))


def test_task_arithmetic():
    # 0.3 * (T1 + T2) = 0.3 * [3, -1, 2, -3, 6]
    assert_tv(task_arithmetic([tv(**T1), tv(**T2)]), dict(w=[0.9, -0.3, 0.6, -0.9, 1.8]))
    # 0.5 * (T1 + T2 + T3) = 0.5 * [2, -2, 4, -2, 1]
    assert_tv(task_arithmetic([tv(**T1), tv(**T2), tv(**T3)], lam=0.5), dict(w=[1.0, -1.0, 2.0, -1.0, 0.5]))


def test_ties_hand_computed():
    # density 0.4 of 5 entries keeps ceil(2.0) = 2 per task:
    #   T1 [1,-2,3,0,4]   -> [0, 0, 3, 0, 4]      (|4|, |3|)
    #   T2 [2,1,-1,-3,2]  -> [2, 0, 0,-3, 0]      (|-3|, then the tie |2|,|2| keeps index 0)
    #   T3 [-1,-1,2,1,-5] -> [0, 0, 2, 0,-5]      (|-5|, |2|)
    # mass = [2, 0, 5, -3, -1] -> elected sign [+, 0, +, -, -]
    # disjoint mean: [2/1, 0, (3+2)/2, -3/1, -5/1]  (T1's +4 disagrees at index 4)
    merged = ties([tv(**T1), tv(**T2), tv(**T3)], density=0.4)
    assert_tv(merged, dict(w=[2.0, 0.0, 2.5, -3.0, -5.0]))
    # lam scales the result
    assert_tv(ties([tv(**T1), tv(**T2), tv(**T3)], density=0.4, lam=0.5), dict(w=[1.0, 0.0, 1.25, -1.5, -2.5]))


def test_ties_sign_election_is_by_mass_not_count():
    # two small positives against one large negative: 1 + 1 - 5 = -3 -> elected "-"
    # entry 1: 2 + 2 - 1 = 3 -> "+", mean of the two positives = 2
    tasks = [tv(w=[1.0, 2.0]), tv(w=[1.0, 2.0]), tv(w=[-5.0, -1.0])]
    assert_tv(ties(tasks, density=1.0), dict(w=[-5.0, 2.0]))


def test_ties_scope_tensor_vs_global():
    # one task, density 0.5:
    #   per tensor: x [1, 2] keeps 2, y [10, 20] keeps 20
    #   global over [1, 2, 10, 20]: keeps 10 and 20
    task = [tv(x=[1.0, 2.0], y=[10.0, 20.0])]
    assert_tv(ties(task, density=0.5), dict(x=[0.0, 2.0], y=[0.0, 20.0]))
    assert_tv(ties(task, density=0.5, scope="global"), dict(x=[0.0, 0.0], y=[10.0, 20.0]))


def _slow_ties(rows: list[list[float]], density: float) -> list[float]:
    """Obvious per-entry reference of TIES on one tensor."""
    k = math.ceil(round(density * len(rows[0]), 6))
    trimmed = []
    for row in rows:
        order = sorted(range(len(row)), key=lambda i: (-abs(row[i]), i))[:k]
        trimmed.append([row[i] if i in order else 0.0 for i in range(len(row))])
    out = []
    for i in range(len(rows[0])):
        column = [t[i] for t in trimmed]
        mass = sum(column)
        sign = (mass > 0) - (mass < 0)
        agree = [v for v in column if v != 0 and ((v > 0) - (v < 0)) == sign]
        out.append(sum(agree) / len(agree) if agree else 0.0)
    return out


def test_ties_matches_slow_reference():
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(4, 37, generator=g)
    merged = ties([TaskVector({"w": r}) for r in rows], density=0.3)
    expected = torch.tensor(_slow_ties(rows.tolist(), 0.3))
    torch.testing.assert_close(merged["w"], expected)


def test_dare_without_drop_is_task_arithmetic():
    tasks = [tv(**T1), tv(**T2), tv(**T3)]
    assert_tv(dare(tasks, drop=0.0, lam=0.5), task_arithmetic(tasks, lam=0.5).vector)


def test_dare_each_entry_is_a_rescaled_subset():
    # drop 0.5 -> survivors x2; with lam 1 each entry is one of
    # {0, 2*a, 2*b, 2*(a+b)} for a in T_a, b in T_b, e.g. entry 0 in {0, 2, 20, 22}
    a, b = [1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]
    merged = dare([tv(w=a), tv(w=b)], drop=0.5, lam=1.0, seed=7)["w"].tolist()
    for m, x, y in zip(merged, a, b):
        assert min(abs(m - c) for c in (0.0, 2 * x, 2 * y, 2 * (x + y))) < 1e-5


def test_dare_is_deterministic_per_seed():
    g = torch.Generator().manual_seed(0)
    tasks = [TaskVector({"w": torch.randn(100, generator=g)}) for _ in range(3)]
    first = dare(tasks, seed=1)["w"]
    torch.testing.assert_close(dare(tasks, seed=1)["w"], first, rtol=0, atol=0)
    assert not torch.equal(dare(tasks, seed=2)["w"], first)


def test_dare_expectation_is_task_arithmetic():
    g = torch.Generator().manual_seed(0)
    tasks = [TaskVector({"w": torch.rand(8, generator=g) * 2 - 1}) for _ in range(2)]
    # per seed each entry has std <= sqrt(2) (drop 0.5, lam 1); over 2000 seeds <= 0.032
    mean = torch.stack([dare(tasks, drop=0.5, lam=1.0, seed=s)["w"] for s in range(2000)]).mean(0)
    torch.testing.assert_close(mean, task_arithmetic(tasks, lam=1.0)["w"], atol=0.15, rtol=0)


def test_dare_ties_consensus_sums_agreeing_entries():
    # drop 0 keeps everything; mass T1+T2+T3 = [2,-2,4,-2,1] -> signs [+,-,+,-,+]
    #   0: 1 + 2 (T3 -1 out) = 3     1: -2 + -1 (T2 +1 out) = -3    2: 3 + 2 (T2 -1 out) = 5
    #   3: -3 (T3 +1 out)            4: 4 + 2 (T3 -5 out) = 6
    tasks = [tv(**T1), tv(**T2), tv(**T3)]
    assert_tv(dare_ties(tasks, drop=0.0, lam=1.0), dict(w=[3.0, -3.0, 5.0, -3.0, 6.0]))
    assert_tv(dare(tasks, drop=0.0, lam=1.0, consensus="ties"), dict(w=[3.0, -3.0, 5.0, -3.0, 6.0]))


def test_norm_rescaled_average_hand_computed():
    # ||tau_1|| = ||[3,4,0,0]|| = 5, ||tau_2|| = ||[0,0,-6,-8]|| = 10 -> 15
    # ||tau_hat_1|| = ||[0,4,0,0]|| = 4, ||tau_hat_2|| = ||[0,0,0,-8]|| = 8 -> 12
    # factor 15/12 = 1.25; 1.25 * ([0,4,0,0] + [0,0,0,-8]) = [0, 5, 0, -10]
    taus = [tv(w=[3.0, 4.0, 0.0, 0.0]), tv(w=[0.0, 0.0, -6.0, -8.0])]
    hats = [tv(w=[0.0, 4.0, 0.0, 0.0]), tv(w=[0.0, 0.0, 0.0, -8.0])]
    assert_tv(norm_rescaled_average(taus, hats), dict(w=[0.0, 5.0, 0.0, -10.0]))
    assert_tv(norm_rescaled_average(taus, hats, lam=0.5), dict(w=[0.0, 2.5, 0.0, -5.0]))
    zeros = [tv(w=[0.0] * 4), tv(w=[0.0] * 4)]
    assert_tv(norm_rescaled_average(taus, zeros), dict(w=[0.0] * 4))


def test_pspar_merge_hand_computed():
    taus = [tv(w=[3.0, 4.0, 0.0, 0.0]), tv(w=[0.0, 0.0, -6.0, -8.0])]
    # P-Discard alpha 0.5 drops floor(0.5 * 2) = 1 of each sign's 2 entries, the smaller:
    #   [0,4,0,0] and [0,0,0,-8] -> as above, [0, 5, 0, -10]
    assert_tv(pspar_merge(taus, alpha=0.5), dict(w=[0.0, 5.0, 0.0, -10.0]))
    # "high" drops the larger instead: [3,0,0,0] (3) and [0,0,-6,0] (6) -> factor 15/9
    #   15/9 * [3, 0, -6, 0] = [5, 0, -10, 0]
    assert_tv(pspar_merge(taus, alpha=0.5, mode="high"), dict(w=[5.0, 0.0, -10.0, 0.0]), atol=1e-5)
    # alpha 0 keeps everything: factor 1, plain sum
    assert_tv(pspar_merge(taus, alpha=0.0), dict(w=[3.0, 4.0, -6.0, -8.0]))
    random = pspar_merge(taus, alpha=0.5, mode="random", seed=3)
    torch.testing.assert_close(random["w"], pspar_merge(taus, alpha=0.5, mode="random", seed=3)["w"])


# -- dynamic methods ---------------------------------------------------------------------------
# EMR / TALL toy: three tasks of 4 entries, split over two tensors to check that EMR's rescaler
# is taken over the whole task vector.
E1 = dict(a=[2.0, -1.0], b=[3.0, 0.0])
E2 = dict(a=[1.0, -3.0], b=[-2.0, 1.0])
E3 = dict(a=[-4.0, 2.0], b=[1.0, 2.0])


def test_emr_hand_computed():
    # sum = [-1, -2, 2, 3] -> sign [-, -, +, +]
    # |tau_uni| = max |tau_k| among agreeing: [4 (E3), 3 (E2), 3 (E1), 2 (E3)] -> [-4, -3, 3, 2]
    # M1 = [F, T, T, F], M2 = [F, T, F, T], M3 = [T, F, T, T]
    # lambda_1 = (2+1+3+0) / (3+3)   = 1
    # lambda_2 = (1+3+2+1) / (3+2)   = 1.4
    # lambda_3 = (4+2+1+2) / (4+3+2) = 1
    parts = emr_components([tv(**E1), tv(**E2), tv(**E3)])
    assert_tv(parts.unified, dict(a=[-4.0, -3.0], b=[3.0, 2.0]))
    assert parts.masks[1]["a"].tolist() == [False, True] and parts.masks[1]["b"].tolist() == [False, True]
    assert parts.rescalers == pytest.approx((1.0, 1.4, 1.0))
    deltas = emr_merging([tv(**E1), tv(**E2), tv(**E3)])
    assert_tv(deltas[0], dict(a=[0.0, -3.0], b=[3.0, 0.0]))
    assert_tv(deltas[1], dict(a=[0.0, -4.2], b=[0.0, 2.8]))
    assert_tv(deltas[2], dict(a=[-4.0, 0.0], b=[3.0, 2.0]))
    # tau_uni: 4 floats, 3 masks of 4 bits, 3 rescalers
    assert parts.storage_bits() == 4 * 32 + 3 * 4 + 3 * 32


def test_emr_rescaler_preserves_l1_mass():
    g = torch.Generator().manual_seed(5)
    tasks = [TaskVector({"x": torch.randn(3, 7, generator=g), "y": torch.randn(11, generator=g)}) for _ in range(4)]
    for task, delta in zip(tasks, emr_merging(tasks)):
        l1 = lambda t: sum(float(v.abs().sum()) for v in t.vector.values())  # noqa: E731
        assert l1(delta) == pytest.approx(l1(task), rel=1e-5)


def test_tall_masks_hand_computed():
    # tau_MTL = [-1, -2, 2, 3]
    # lam 1: |tau_k| >= |tau_MTL - tau_k|
    #   E1: [2,1,3,0] vs |[-3,-1,-1,3]| = [3,1,1,3] -> [F, T (1 >= 1), T, F]
    #   E2: [1,3,2,1] vs |[-2,1,4,2]|   = [2,1,4,2] -> [F, T, F, F]
    #   E3: [4,2,1,2] vs |[3,-4,1,1]|   = [3,4,1,1] -> [T, F, T (1 >= 1), T]
    tasks = [tv(**E1), tv(**E2), tv(**E3)]
    deltas = tall_masks(tasks, lam=1.0)
    assert_tv(deltas[0], dict(a=[0.0, -2.0], b=[2.0, 0.0]))
    assert_tv(deltas[1], dict(a=[0.0, -2.0], b=[0.0, 0.0]))
    assert_tv(deltas[2], dict(a=[-1.0, 0.0], b=[2.0, 3.0]))
    # lam 0.4: E1 [2,1,3,0] vs [1.2,0.4,0.4,1.2] -> [T,T,T,F]; E2, E3 keep everything
    deltas = tall_masks(tasks)
    assert_tv(deltas[0], dict(a=[-1.0, -2.0], b=[2.0, 0.0]))
    assert_tv(deltas[1], dict(a=[-1.0, -2.0], b=[2.0, 3.0]))
    # coef scales the masked multi-task vector
    assert_tv(tall_masks(tasks, lam=1.0, coef=0.5)[2], dict(a=[-0.5, 0.0], b=[1.0, 1.5]))
    parts = tall_mask_components(tasks)
    assert_tv(parts.multi_task, dict(a=[-1.0, -2.0], b=[2.0, 3.0]))
    assert parts.storage_bits() == 4 * 32 + 3 * 4


def _switch(mask, positive, scale) -> TSwitch:
    return TSwitch(torch.tensor(mask), torch.tensor(positive), scale)


def test_tswitch_merge_hand_computed():
    # s1 = 0.5 * [+1, 0, -1, +1] = [0.5, 0, -0.5, 0.5];  s2 = 2 * [0, +1, +1, 0] = [0, 2, 2, 0]
    s1 = {"w": _switch([True, False, True, True], [True, False, False, True], 0.5)}
    s2 = {"w": _switch([False, True, True, False], [False, True, True, False], 2.0)}
    assert_tv(tswitch_merge([s1, s2], [1.0, 0.0]), dict(w=[0.5, 0.0, -0.5, 0.5]))
    # 0.5 * s1 + 0.5 * s2 = [0.25, 1, -0.25 + 1, 0.25]
    assert_tv(tswitch_merge([s1, s2], [0.5, 0.5]), dict(w=[0.25, 1.0, 0.75, 0.25]))


def test_tswitch_merge_one_hot_is_the_reconstruction():
    tau = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    switch = b_approx(tau, 0.5)
    merged = tswitch_merge([{"w": switch}], [1.0])
    torch.testing.assert_close(merged["w"], switch.reconstruct())


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ts: ties(ts, density=0.0), r"density must be in \(0, 1\], got 0.0"),
        (lambda ts: ties(ts, density=1.5), r"density must be in \(0, 1\], got 1.5"),
        (lambda ts: ties(ts, density=float("nan")), "density must be in"),
        (lambda ts: ties(ts, scope="layer"), "scope must be one of"),
        (lambda ts: ties(ts, lam=float("inf")), "lam must be a finite number"),
        (lambda ts: dare(ts, drop=1.0), r"drop must be in \[0, 1\), got 1.0"),
        (lambda ts: dare(ts, drop=-0.1), r"drop must be in \[0, 1\)"),
        (lambda ts: dare(ts, consensus="count"), "consensus must be one of"),
        (lambda ts: task_arithmetic(ts, lam=float("nan")), "lam must be a finite number"),
        (lambda ts: pspar_merge(ts, alpha=1.0), r"alpha must be in \[0, 1\)"),
        (lambda ts: pspar_merge(ts, mode="middle"), "mode must be one of"),
        (lambda ts: tall_masks(ts, lam=-1.0), "lam must be >= 0"),
        (lambda ts: sparse_task_arithmetic(ts, weights=[1.0]), "got 1 weights for 2 task vectors"),
        (lambda ts: sparse_task_arithmetic(ts, sparsify="top"), "sparsify must be one of"),
        (lambda ts: norm_rescaled_average(ts, ts[:1]), "got 1 sparsified vectors for 2"),
    ],
)
def test_hyper_parameter_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call([tv(**T1), tv(**T2)])


@pytest.mark.parametrize(
    "method",
    ["weight_average", "task_arithmetic", "ties", "dare", "dare_ties", "pspar_merge", "emr_merging", "tall_masks"],
)
def test_task_vector_list_is_checked(method):
    fn = get_method(method).fn
    with pytest.raises(ValueError, match="at least one task vector"):
        fn([])
    with pytest.raises(ValueError, match="shape mismatch"):
        fn([tv(w=[1.0, 2.0]), tv(w=[1.0, 2.0, 3.0])])
    with pytest.raises(ValueError, match="missing in task vector 1: v"):
        fn([tv(w=[1.0], v=[2.0]), tv(w=[1.0])])


def test_tswitch_merge_errors():
    s = {"w": _switch([True, False], [True, False], 1.0)}
    with pytest.raises(ValueError, match="got 1 weights for 2 task switch groups"):
        tswitch_merge([s, s], [1.0])
    with pytest.raises(ValueError, match="at least one task switch group"):
        tswitch_merge([], [])
    other = {"w": _switch([True, False, True], [True, False, True], 1.0)}
    with pytest.raises(ValueError, match="shape mismatch"):
        tswitch_merge([s, other], [0.5, 0.5])
