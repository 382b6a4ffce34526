"""How routing accuracy depends on the depth of the features the router votes with.

Auto-Switch (T-Switch Eq. 8) votes among the ``C`` nearest exemplars of a query's features. A suite
routes on a prefix of the pre-trained backbone (``route_layers`` in the manifest's adapter args:
the embeddings and the first L layers or stages), which is cheaper than a full forward; whether a
deeper prefix separates the tasks better is a question about the data, answered here by measuring
it: for every depth L, the suite's recorded exemplars (``manifest.exemplar_ids``, the union of the
query sets Q_k) are embedded at depth L, a fresh :class:`~tswitch.routing.KNNRouter` is built over
them, and each split's items are routed with it. ``None`` stands for the full backbone's features.

Nothing in the suite is changed; ``python -m tswitch route-depth --suite S`` prints the table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch


def _features(adapter, inputs: Sequence, batch: int) -> torch.Tensor:
    out = [
        adapter.route_features(adapter.preprocess(list(inputs[i : i + batch]))) for i in range(0, len(inputs), batch)
    ]
    return torch.cat(out).float()


def served_exemplars(suite) -> dict[str, list]:
    """The inputs of the suite's Auto-Switch exemplars (``manifest.exemplar_ids``), as many per task
    as its served router holds."""
    from .flex_run import exemplar_inputs

    per_task = suite.manifest.router.extra.get("exemplars_per_task")
    return exemplar_inputs(suite, int(per_task or suite.router.num_exemplars // len(suite.task_names)))


def router_at_depth(
    suite, depth: int | None, k: int | None = None, device: str = "cpu", exemplars: dict[str, list] | None = None
):
    """The suite's backbone routing at depth ``depth`` and a k-NN router over its exemplars there.

    The exemplars (``exemplars``, default :func:`served_exemplars`) are embedded with the pre-trained
    backbone's first ``depth`` layers (``None``: all of them); the metric is the served router's.
    Returns ``(adapter, KNNRouter)``.
    """
    from ..models import load_adapter
    from ..routing import KNNRouter

    metric = str(suite.manifest.router.extra.get("metric", "cosine"))
    exemplars = served_exemplars(suite) if exemplars is None else exemplars
    adapter = load_adapter(
        suite.manifest.adapter, **{**suite.manifest.adapter_args, "route_layers": depth, "device": device}
    )
    batch = suite.manifest.eval_batch
    feats = [_features(adapter, exemplars[t], batch) for t in suite.task_names]
    task_ids = torch.cat([torch.full((len(f),), i, dtype=torch.long) for i, f in enumerate(feats)])
    c = suite.default_k() if k is None else k
    return adapter, KNNRouter(torch.cat(feats), task_ids, list(suite.task_names), k=c, metric=metric)


def at_depth(suite, depth: int | None):
    """A copy of ``suite`` whose Auto-Switch routes at depth ``depth`` (router rebuilt from its exemplars).

    The pack, heads and splits are the suite's; only the routing features and the router change, so
    ``at_depth(s, L).evaluate("auto-switch")`` measures Auto-Switch served at another depth.
    """
    from .suite import Suite

    device = "cuda" if torch.cuda.is_available() else "cpu"
    adapter, knn = router_at_depth(suite, depth, device=device)
    return Suite(suite.path, adapter=adapter, router=knn, dense_bytes=suite.dense_bytes)


def routing_by_depth(
    suite,
    depths: Sequence[int | None],
    splits: Sequence[str] = ("val", "test"),
    k: int | None = None,
    limit: int | None = None,
) -> dict:
    """Routing accuracy of a k-NN router over the suite's exemplars, per feature depth and split.

    Args:
        suite: an opened :class:`~tswitch.suites.suite.Suite` whose manifest records exemplar ids.
        depths: feature depths L to try (``None``: the full backbone's features).
        splits: which splits to route.
        k: neighbours C (default: the suite's Auto-Switch C).
        limit: route at most this many items per task and split.

    Returns:
        ``{"k", "metric", "exemplars_per_task", "served_depth", "rows": [{"depth", split: accuracy,
        f"{split}_recall": {task: recall}}]}``.
    """
    from .data import apply_split, load_task

    c = suite.default_k() if k is None else k
    names = list(suite.task_names)
    items: dict[str, dict[str, list]] = {}
    with open(suite.file("splits.json"), encoding="utf-8") as f:
        ids = json.load(f)
    for t in suite.manifest.tasks:
        data = load_task(t.loader["name"], **t.loader.get("args", {}))
        items[t.name] = {s: list(apply_split(data, ids[t.name][s][:limit]).inputs) for s in splits}
    batch = suite.manifest.eval_batch
    exemplars = served_exemplars(suite)  # read once, embedded at every depth
    rows = []
    for depth in depths:
        adapter, knn = router_at_depth(suite, depth, k=c, exemplars=exemplars)
        row: dict = {"depth": depth}
        for split in splits:
            right = total = 0
            recall = {}
            for i, t in enumerate(names):
                routed = knn.route(_features(adapter, items[t][split], batch)).routed_task
                hits = int((routed == i).sum())
                recall[t] = hits / max(1, len(routed))
                right, total = right + hits, total + len(routed)
            row[split] = right / max(1, total)
            row[f"{split}_recall"] = recall
        rows.append(row)
    return {
        "k": c,
        "metric": knn.metric,
        "exemplars_per_task": knn.num_exemplars // len(names),
        "served_depth": suite.manifest.adapter_args.get("route_layers"),
        "rows": rows,
    }
