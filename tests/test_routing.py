"""The Auto-Switch k-NN router (T-Switch Eq. 8) on hand-computed 2-D examples, per-sample routing
of mixed batches, validation, and the safetensors round trip."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from safetensors.torch import save_file

from tswitch.routing import KNNRouter, diagnostics

TASKS = ["a", "b", "c"]

# Five exemplars in the plane (task in the comment); distances below are worked by hand.
EXEMPLARS = torch.tensor(
    [
        [0.0, 0.0],  # 0: a
        [1.0, 0.0],  # 1: a
        [0.0, 2.0],  # 2: b
        [3.0, 0.0],  # 3: b
        [0.0, -4.0],  # 4: c
    ]
)
TASK_IDS = torch.tensor([0, 0, 1, 1, 2])


def l2_router(k: int = 3) -> KNNRouter:
    return KNNRouter(EXEMPLARS, TASK_IDS, TASKS, k=k, metric="l2")


# -- votes and weights -------------------------------------------------------------------------
def test_l2_votes_and_weights_by_hand():
    # (0.5, 0): d = 0.5 (ex 0), 0.5 (ex 1), sqrt(0.25 + 4) (ex 2), 2.5 (ex 3), sqrt(0.25 + 16) (ex 4)
    # (2, 0):   d = 2 (ex 0), 1 (ex 1), sqrt(8) (ex 2), 1 (ex 3), sqrt(20) (ex 4)
    r = l2_router(k=3).route(torch.tensor([[0.5, 0.0], [2.0, 0.0]]))
    assert r.neighbours.tolist() == [[0, 1, 2], [1, 3, 0]]  # equal distances: lower index first
    torch.testing.assert_close(r.distances, torch.tensor([[0.5, 0.5, math.sqrt(4.25)], [1.0, 1.0, 2.0]]))
    assert r.neighbour_tasks.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert r.votes.tolist() == [[2, 1, 0], [2, 1, 0]]
    torch.testing.assert_close(r.weights, torch.tensor([[2 / 3, 1 / 3, 0.0], [2 / 3, 1 / 3, 0.0]]))
    assert r.routed_task.tolist() == [0, 0]
    assert r.task_names == tuple(TASKS)


def test_weights_sum_to_one_and_count_k():
    r = l2_router(k=5).route(torch.randn(7, 2))
    assert r.votes.sum(1).tolist() == [5] * 7
    torch.testing.assert_close(r.weights.sum(1), torch.ones(7))
    assert r.neighbours.shape == r.distances.shape == (7, 5)
    assert (r.distances[:, 1:] >= r.distances[:, :-1]).all()  # nearest first


def test_tie_goes_to_the_task_of_the_nearest_neighbour():
    # (2.2, 0), k=2: ex 3 (b) at 0.8, ex 1 (a) at 1.2 -> one vote each; b holds the nearest.
    r = l2_router(k=2).route(torch.tensor([[2.2, 0.0], [1.6, 0.0]]))
    assert r.neighbours.tolist() == [[3, 1], [1, 3]]
    assert r.votes.tolist() == [[1, 1, 0], [1, 1, 0]]
    assert r.routed_task.tolist() == [1, 0]  # plain argmax would say a for both


def test_tie_among_three_tasks_skips_untied_tasks():
    feats = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]])
    router = KNNRouter(feats, torch.tensor([0, 1, 1, 2, 2]), TASKS, k=5, metric="l2")
    r = router.route(torch.tensor([[0.1], [3.9]]))
    assert r.votes.tolist() == [[1, 2, 2], [1, 2, 2]]
    # the nearest neighbour (task a) is not among the tied tasks: b (ex 1) for the first, c for the second
    assert r.routed_task.tolist() == [1, 2]


def test_cosine_distance_by_hand_and_differs_from_l2():
    feats = torch.tensor([[1.0, 0.0], [2.0, 0.2], [0.0, 1.0], [-1.0, 0.0]])
    ids = torch.tensor([0, 1, 1, 2])
    query = torch.tensor([[10.0, 0.0]])
    cos = KNNRouter(feats, ids, TASKS, k=3, metric="cosine").route(query)
    assert cos.neighbours.tolist() == [[0, 1, 2]]
    sim = 2.0 / math.sqrt(4.04)
    torch.testing.assert_close(cos.distances, torch.tensor([[0.0, 1.0 - sim, 1.0]]), atol=1e-6, rtol=0)
    l2 = KNNRouter(feats, ids, TASKS, k=3, metric="l2").route(query)
    assert l2.neighbours.tolist() == [[1, 0, 2]]
    torch.testing.assert_close(l2.distances, torch.tensor([[math.sqrt(64 + 0.04), 9.0, math.sqrt(101)]]))
    assert KNNRouter(feats, ids, TASKS, k=1, metric="cosine").route(query).routed_task.tolist() == [0]
    assert KNNRouter(feats, ids, TASKS, k=1, metric="l2").route(query).routed_task.tolist() == [1]


def test_cosine_ignores_scale():
    router = KNNRouter(EXEMPLARS[1:], TASK_IDS[1:], TASKS, k=2, metric="cosine")
    q = torch.tensor([[0.3, 0.7], [-1.0, -2.0]])
    a, b = router.route(q), router.route(100 * q)
    assert torch.equal(a.neighbours, b.neighbours)
    torch.testing.assert_close(a.distances, b.distances)


def test_mixed_batch_routes_each_sample_to_its_own_task():
    g = torch.Generator().manual_seed(0)
    dim, per_task = 16, 30
    centres = 10.0 * torch.eye(dim)[:3]
    feats = torch.cat([centres[t] + torch.randn(per_task, dim, generator=g) for t in range(3)])
    ids = torch.arange(3).repeat_interleave(per_task)
    truth = torch.tensor([2, 0, 1, 1, 0, 2, 0, 2, 1])
    queries = centres[truth] + torch.randn(len(truth), dim, generator=g)
    for metric in ("cosine", "l2"):
        r = KNNRouter(feats, ids, TASKS, k=10, metric=metric).route(queries)
        assert r.routed_task.tolist() == truth.tolist()
        torch.testing.assert_close(r.weights, torch.nn.functional.one_hot(truth, 3).float())


def test_empty_batch():
    r = l2_router().route(torch.zeros(0, 2))
    assert r.neighbours.shape == (0, 3) and r.weights.shape == (0, 3) and r.routed_task.shape == (0,)


def test_diagnostics_is_json_ready():
    r = l2_router(k=3).route(torch.tensor([[0.5, 0.0], [2.2, 0.0]]))
    d = diagnostics(r, 1)
    json.dumps(d)
    assert d["routed_task"] == "a"  # ex 3 (b, 0.8), ex 1 (a, 1.2), ex 0 (a, 2.2): a has two votes
    assert d["weights"] == pytest.approx({"a": 2 / 3, "b": 1 / 3, "c": 0.0})
    assert [n["exemplar"] for n in d["neighbours"]] == [3, 1, 0]
    assert [n["task"] for n in d["neighbours"]] == ["b", "a", "a"]
    assert [n["distance"] for n in d["neighbours"]] == pytest.approx([0.8, 1.2, 2.2])
    with pytest.raises(ValueError, match="sample index"):
        diagnostics(r, 2)


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, -1, 6, True, 1.5, None])
def test_k_validation(k):
    with pytest.raises(ValueError, match="k must be"):
        KNNRouter(EXEMPLARS, TASK_IDS, TASKS, k=k)
    if k is not None:
        with pytest.raises(ValueError, match="k must be"):
            l2_router().route(torch.zeros(1, 2), k=k)


def test_k_bounds_accepted():
    assert l2_router(k=1).route(torch.zeros(1, 2)).neighbours.shape == (1, 1)
    r = l2_router(k=1).route(torch.zeros(1, 2), k=5)
    assert r.votes.tolist() == [[2, 2, 1]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(features=torch.zeros(5)), "features must be"),
        (dict(features=torch.zeros(5, 2, dtype=torch.long)), "features must be"),
        (dict(features=torch.zeros(0, 2), task_ids=torch.zeros(0, dtype=torch.long)), "at least one exemplar"),
        (dict(features=torch.full((5, 2), float("nan"))), "NaN"),
        (dict(task_ids=torch.tensor([0, 0, 1, 1, 3])), r"task_ids must lie in \[0, 3\)"),
        (dict(task_ids=torch.tensor([0, 0, 1, 1])), "task_ids must be"),
        (dict(task_ids=TASK_IDS.int()), "task_ids must be"),
        (dict(task_names=["a", "a", "c"]), "distinct"),
        (dict(task_names=["a", "", "c"]), "distinct"),
        (dict(metric="manhattan"), "valid: cosine, l2"),
    ],
)
def test_constructor_validation(kwargs, match):
    args = dict(features=EXEMPLARS, task_ids=TASK_IDS, task_names=TASKS, k=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        KNNRouter(**args)


def test_query_validation():
    with pytest.raises(ValueError, match=r"queries must be \(B, 2\)"):
        l2_router().route(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        l2_router().route(torch.tensor([[float("inf"), 0.0]]))


def test_missing_faiss_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install 'tswitch\[routing\]' \(or pip install faiss-cpu\)"):
        l2_router()


# -- persistence -------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_save_load_round_trip(tmp_path, metric):
    g = torch.Generator().manual_seed(1)
    feats, ids = torch.randn(40, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    router = KNNRouter(feats, ids, TASKS, k=7, metric=metric)
    path = str(tmp_path / "router.safetensors")
    router.save(path)
    loaded = KNNRouter.load(path)
    assert (loaded.k, loaded.metric, loaded.task_names) == (7, metric, tuple(TASKS))
    assert torch.equal(loaded.features, feats) and torch.equal(loaded.task_ids, ids)
    q = torch.randn(5, 8, generator=g)
    a, b = router.route(q), loaded.route(q)
    for field in ("neighbours", "distances", "weights", "routed_task"):
        assert torch.equal(getattr(a, field), getattr(b, field))


def test_load_corrupt_files(tmp_path):
    good = str(tmp_path / "good.safetensors")
    l2_router().save(good)
    blob = open(good, "rb").read()
    cases = {
        "garbage": b"not a safetensors file at all",
        "truncated": blob[: len(blob) - 9],
        "empty": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    save_file({"features": torch.zeros(2, 2)}, str(tmp_path / "no-metadata"))
    save_file(
        {"features": torch.zeros(2, 2), "task_ids": torch.zeros(2, dtype=torch.long)},
        str(tmp_path / "bad-k"),
        metadata={
            "tswitch_router": json.dumps(
                {"format": "tswitch-knn-router", "version": 1, "task_names": ["a"], "k": 9, "metric": "l2"}
            )
        },
    )
    for name in [*cases, "no-metadata", "bad-k"]:
        with pytest.raises(ValueError, match="corrupt or invalid router file") as info:
            KNNRouter.load(str(tmp_path / name))
        assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        KNNRouter.load(str(tmp_path / "missing"))
