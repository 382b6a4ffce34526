"""Auto-FlexSwitch routing (journal Eq. 18-19): K-means centres, the neighbour objective against a
slow reference, its decrease on two overlapping clusters, the router's votes, persistence, and
its use by the dynamic-merge engine."""

from __future__ import annotations

import math

import pytest
import torch

from tswitch.routing import KNNRouter
from tswitch.routing.low_rank import (
    AutoFlexConfig,
    LowRankRouter,
    fit_projection,
    kmeans,
    neighbour_loss,
    pca_projection,
)


def overlapping_clusters(n: int = 120, dim: int = 12, seed: int = 0):
    """Two tasks whose features differ only along one low-variance direction, buried under
    high-variance noise shared by both: raw Euclidean neighbours mix them, a good ``L`` does not."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, dim, generator=g) * torch.tensor([0.3] + [2.0] * (dim - 1))
    ids = torch.arange(2 * n) % 2
    x[:, 0] += torch.where(ids == 1, 0.6, -0.6)
    return x, ids


# -- K-means --------------------------------------------------------------------------------------
def test_kmeans_is_deterministic_and_lowers_the_inertia():
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [
            torch.randn(30, 3, generator=g) + c
            for c in (torch.tensor([5.0, 0, 0]), torch.zeros(3), torch.tensor([0, -5.0, 0]))
        ]
    )
    a, b = kmeans(x, 3, seed=1), kmeans(x, 3, seed=1)
    assert torch.equal(a, b) and a.shape == (3, 3)
    found = sorted(tuple(round(float(v)) for v in c) for c in a)
    assert found == [(0, -5, 0), (0, 0, 0), (5, 0, 0)]

    def inertia(c):
        return float(torch.cdist(x, c).min(1).values.pow(2).sum())

    assert inertia(a) < inertia(x[:3])


def test_kmeans_with_more_centres_than_points_keeps_every_point():
    x = torch.randn(4, 2)
    assert torch.equal(kmeans(x, 20), x)
    with pytest.raises(ValueError, match="at least one point"):
        kmeans(torch.zeros(0, 2), 3)


# -- Eq. 19 -----------------------------------------------------------------------------------------
def _slow_eq19(projection, x, x_tasks, centres, centre_tasks, k):
    """Eq. 19 with explicit loops over exemplars and neighbours (the same epsilon rule)."""
    total = 0.0
    for i in range(x.shape[0]):
        d = [float(torch.linalg.vector_norm(projection @ (x[i] - c))) for c in centres]
        nearest = sorted(range(len(d)), key=lambda j: d[j])[:k]
        num = sum(1 / d[j] for j in nearest if int(centre_tasks[j]) == int(x_tasks[i]))
        den = sum(1 / d[j] for j in nearest)
        total += -math.log((num + 1e-3 * den) / ((1 + 1e-3) * den))
    return total / x.shape[0]


def test_eq19_matches_a_slow_reference():
    g = torch.Generator().manual_seed(0)
    x, ids = torch.randn(15, 5, generator=g, dtype=torch.float64), torch.arange(15) % 3
    centres, centre_ids = torch.randn(9, 5, generator=g, dtype=torch.float64), torch.arange(9) % 3
    projection = torch.randn(2, 5, generator=g, dtype=torch.float64)
    fast = float(neighbour_loss(projection, x, ids, centres, centre_ids, k=4))
    assert fast == pytest.approx(_slow_eq19(projection, x, ids, centres, centre_ids, 4), rel=1e-9)


def test_eq19_is_zero_when_every_neighbour_is_of_the_right_task_and_scale_free():
    x = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    centres = torch.tensor([[0.1, 0.0], [0.0, 0.2], [10.0, 0.3], [9.8, 0.0]])
    loss = neighbour_loss(torch.eye(2), x, torch.tensor([0, 1]), centres, torch.tensor([0, 0, 1, 1]), k=2)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)  # float32
    g = torch.Generator().manual_seed(1)
    p, xs, cs = torch.randn(3, 6, generator=g), torch.randn(8, 6, generator=g), torch.randn(5, 6, generator=g)
    ids, cids = torch.arange(8) % 2, torch.arange(5) % 2
    assert float(neighbour_loss(7.0 * p, xs, ids, cs, cids, 3)) == pytest.approx(
        float(neighbour_loss(p, xs, ids, cs, cids, 3)), rel=1e-5
    )


def test_eq19_without_a_same_task_neighbour_is_finite_and_pushes_them_away():
    x = torch.zeros(1, 2)
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    projection = torch.eye(2, requires_grad=True)
    loss = neighbour_loss(projection, x, torch.tensor([0]), centres, torch.tensor([1, 1, 0]), k=2)
    value = float(loss.detach())
    assert math.isfinite(value) and value == pytest.approx(-math.log(1e-3 / (1 + 1e-3)), rel=1e-6)
    loss.backward()
    assert projection.grad is not None and torch.isfinite(projection.grad).all()


def test_eq19_loss_decreases_on_two_overlapping_clusters():
    x, ids = overlapping_clusters()
    centres = torch.cat([kmeans(x[ids == t], 20, seed=t) for t in (0, 1)])
    centre_ids = torch.tensor([0] * 20 + [1] * 20)
    init = pca_projection(x, 4)
    projection, losses = fit_projection(x, ids, centres, centre_ids, init, k=10, epochs=100, lr=0.5)
    assert len(losses) == 101
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    # the learned metric separates what Euclidean neighbours mix
    plain = KNNRouter(centres, centre_ids, ["a", "b"], k=10, metric="l2").route(x)
    learned = LowRankRouter(projection, centres @ projection.T, centre_ids, ["a", "b"], k=10, normalize=False).route(x)

    def acc(r):
        return float((r.routed_task == ids).float().mean())

    assert acc(learned) > acc(plain) + 0.1, (acc(plain), acc(learned))


def test_pca_projection_shape_scale_and_padding():
    x = torch.randn(50, 8)
    p = pca_projection(x, 3)
    assert p.shape == (3, 8)
    torch.testing.assert_close(p @ p.T, 8 * torch.eye(3), atol=1e-4, rtol=0)  # orthogonal rows of norm sqrt(D)
    flat = torch.zeros(10, 6)
    flat[:, 0] = torch.arange(10.0)  # one direction of variance; the other rows are random, orthogonal
    q = pca_projection(flat, 4)
    torch.testing.assert_close(q @ q.T, 6 * torch.eye(4), atol=1e-4, rtol=0)
    assert abs(float(q[0, 0])) == pytest.approx(math.sqrt(6), rel=1e-5)
    with pytest.raises(ValueError, match="rank"):
        pca_projection(x, 9)


# -- the router ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    x, ids = overlapping_clusters(n=60)
    config = AutoFlexConfig(centres=8, rank=4, k=5, epochs=30, normalize=False)
    return (x, ids) + LowRankRouter.fit(x, ids, ["a", "b"], config)


def test_fit_builds_e_centres_per_task_and_reports_the_loss(fitted):
    x, ids, router, report = fitted
    assert router.num_exemplars == 16 and router.task_ids.tolist() == [0] * 8 + [1] * 8
    assert router.rank == 4 and router.dim == x.shape[1] and router.k == 5
    assert report["centres"] == 16 and len(report["loss"]) == 31 and report["loss"][-1] < report["loss"][0]
    assert router.nbytes == 4 * (4 * 12 + 16 * 4)
    assert router.macs_per_query() == 4 * 12 + 16 * 4 < x.shape[0] * x.shape[1]  # vs Auto-Switch's N · D


def test_routes_vote_like_eq5(fitted):
    x, ids, router, _ = fitted
    r = router.route(x[:7])
    assert r.votes.sum(1).tolist() == [5] * 7 and r.neighbours.shape == (7, 5)
    torch.testing.assert_close(r.weights.sum(1), torch.ones(7))
    assert int(r.neighbours.max()) < router.num_exemplars
    # by hand: project, then the nearest centres in the projected space
    q = x[:7] @ router.projection.T
    d = torch.cdist(q, router.centres)
    torch.testing.assert_close(r.distances, d.sort(1).values[:, :5], atol=1e-4, rtol=1e-4)


def test_save_load_round_trip(fitted, tmp_path):
    x, _, router, _ = fitted
    path = str(tmp_path / "router-flex.safetensors")
    router.save(path)
    back = LowRankRouter.load(path)
    assert back.task_names == router.task_names and back.k == router.k and back.normalize is False
    assert torch.equal(back.projection, router.projection) and torch.equal(back.centres, router.centres)
    a, b = router.route(x), back.route(x)
    assert torch.equal(a.neighbours, b.neighbours) and torch.equal(a.routed_task, b.routed_task)


def test_load_refuses_other_files(fitted, tmp_path):
    x, ids, _, _ = fitted
    knn = str(tmp_path / "knn.safetensors")
    KNNRouter(x, ids, ["a", "b"], k=3).save(knn)
    with pytest.raises(ValueError, match="corrupt or invalid low-rank router"):
        LowRankRouter.load(knn)
    with pytest.raises(FileNotFoundError):
        LowRankRouter.load(str(tmp_path / "missing.safetensors"))


def test_normalised_router_ignores_query_length():
    x, ids = overlapping_clusters(n=30)
    router, _ = LowRankRouter.fit(x, ids, ["a", "b"], AutoFlexConfig(centres=5, rank=3, k=3, epochs=5))
    a, b = router.route(x[:5]), router.route(3.0 * x[:5])
    assert torch.equal(a.neighbours, b.neighbours)


def test_fit_validation():
    x, ids = overlapping_clusters(n=10)
    with pytest.raises(ValueError, match="every task"):
        LowRankRouter.fit(x, torch.zeros_like(ids), ["a", "b"])
    with pytest.raises(ValueError, match="match"):
        LowRankRouter.fit(x, ids[:-1], ["a", "b"])
    for kw in ({"centres": 0}, {"rank": 0}, {"k": 0}, {"epochs": -1}, {"lr": 0.0}):
        with pytest.raises(ValueError):
            AutoFlexConfig(**kw)
    with pytest.raises(ValueError, match="projected"):
        LowRankRouter(torch.ones(2, 5), torch.ones(3, 5), torch.zeros(3, dtype=torch.long), ["a"])


def test_rank_is_capped_at_the_feature_dimension():
    x, ids = overlapping_clusters(n=20, dim=3)
    router, report = LowRankRouter.fit(x, ids, ["a", "b"], AutoFlexConfig(centres=4, rank=32, k=3, epochs=2))
    assert router.rank == 3 and report["rank"] == 3


class LinearAdapter:
    """The least an engine needs: ``features = x @ W.T + b`` under the given weights; routing
    features are the inputs themselves (so the router's space is the toy clusters')."""

    def __init__(self, dim_in: int, dim_out: int = 8):
        g = torch.Generator().manual_seed(0)
        self._state = {"fc.weight": torch.randn(dim_out, dim_in, generator=g), "fc.bias": torch.zeros(dim_out)}
        self.device = torch.device("cpu")

    def state_dict(self):
        return dict(self._state)

    def features(self, batch, weights=None):
        w = weights or self._state
        return batch["x"] @ w["fc.weight"].T + w["fc.bias"]

    def route_features(self, batch):
        return batch["x"]


def test_auto_switch_runs_with_the_low_rank_router(fitted):
    """The engine's AutoSwitch takes the low-rank router as it takes the KNN router."""
    from tswitch.core.binary import b_approx
    from tswitch.merging import AutoSwitch, DynamicMergeEngine, PackedSwitches
    from tswitch.models.base import Head

    x, ids, router, _ = fitted
    adapter = LinearAdapter(x.shape[1])
    base = adapter.state_dict()
    g = torch.Generator().manual_seed(0)
    switches = {
        t: {k: b_approx(0.1 * torch.randn(v.shape, generator=g), 0.7) for k, v in base.items()} for t in ("b", "a")
    }  # engine order differs from the router's
    heads = {t: Head(torch.randn(2, 8, generator=g), torch.zeros(2), ("0", "1")) for t in ("a", "b")}
    engine = DynamicMergeEngine(adapter, base, PackedSwitches.from_switches(switches), heads)
    out, route = AutoSwitch(engine, router).predict({"x": x[:6]})
    assert out.weights.shape == (6, 2) and torch.equal(route.routed_task, router.route(x[:6]).routed_task)
    assert [out.tasks[i] for i in out.routed_task.tolist()] == [
        router.task_names[i] for i in route.routed_task.tolist()
    ]
