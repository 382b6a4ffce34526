"""Serve a suite together with a visitor's taught tasks: Auto-Switch over both (T-Switch Eq. 8).

The suite's own parts stay shared and read-only; what is built here per request (the router over
the suite's exemplars plus the visitor's, the engine over the suite's switches plus the visitor's)
references them and adds the visitor's tensors, so nothing one visitor teaches reaches another.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

from ..merging import AutoSwitch, DynamicMergeEngine, PackedSwitches

_SWITCHES: dict[str, PackedSwitches] = {}  # suite folder -> its switches, packed (decoded once)
_SWITCHES_LOCK = threading.Lock()


def suite_switches(suite) -> PackedSwitches:
    """The suite's switches, packed for the engine (decoded from its pack once per process)."""
    with _SWITCHES_LOCK:
        if suite.path not in _SWITCHES:
            _SWITCHES[suite.path] = PackedSwitches.from_pack(suite.pack)
        return _SWITCHES[suite.path]


def combined_router(suite, extra: Sequence[tuple[str, torch.Tensor]]):
    """A :class:`~tswitch.routing.KNNRouter` over the suite's exemplars and each ``(task, features)``
    of ``extra``, with the suite's ``k`` and metric."""
    from ..routing import KNNRouter

    base = suite.router
    features = [base.features] + [f for _, f in extra]
    ids = [base.task_ids] + [
        torch.full((f.shape[0],), len(base.task_names) + i, dtype=torch.long) for i, (_, f) in enumerate(extra)
    ]
    names = tuple(base.task_names) + tuple(n for n, _ in extra)
    return KNNRouter(torch.cat(features), torch.cat(ids), names, k=base.k, metric=base.metric)


def auto_switch(suite, tasks: Sequence) -> AutoSwitch:
    """Auto-Switch over the suite's tasks and the taught ``tasks`` (:class:`~tswitch.teach.run.TaughtTask`)."""
    own = suite_switches(suite)
    switches = PackedSwitches({**own.entries, **{t.name: t.switches for t in tasks}})
    heads = {**suite.heads, **{t.name: t.head for t in tasks}}
    # no merged-weights cache: each one is a whole model, and a visitor's inputs rarely repeat
    engine = DynamicMergeEngine(suite.adapter, suite.adapter.state_dict(), switches, heads, cache_size=0)
    return AutoSwitch(engine, combined_router(suite, [(t.name, t.exemplars) for t in tasks]))


def route(suite, tasks: Sequence, text: str, k: int | None = None, top: int = 5) -> dict:
    """Route ``text`` among the suite's and the taught tasks and predict (the shape of ``Suite.route``):
    ``routed_task``, ``weights``, ``votes``, ``neighbours`` (task, distance, exemplar index, text),
    ``prediction`` (top labels of the routed task's head) and ``all_tasks`` (each head's top label)."""
    from ..routing import diagnostics

    auto = auto_switch(suite, tasks)
    k = k or auto.router.k
    if not 1 <= k <= auto.router.num_exemplars:
        raise ValueError(f"k must be in [1, {auto.router.num_exemplars}], got {k}")
    output, routed = auto.predict(suite.adapter.preprocess([text]), k=k)
    result = diagnostics(routed, 0)
    previews = [e.get("text") for e in suite.exemplars] + [s for t in tasks for s in t.exemplar_texts]
    for n in result["neighbours"]:
        n["exemplar_preview"] = previews[n["exemplar"]] if n["exemplar"] < len(previews) else None
    task = output.tasks[int(output.routed_task[0])]
    probs = output.probs_routed[0]
    labels = auto.engine.heads[task].labels
    order = torch.argsort(probs, descending=True)[:top].tolist()
    result["routed_task"] = task
    result["k"] = k
    result["votes"] = {n: int(v) for n, v in zip(routed.task_names, routed.votes[0].tolist())}
    result["prediction"] = {labels[i]: float(probs[i]) for i in order}
    result["all_tasks"] = {t: auto.engine.heads[t].labels[int(output.logits[t][0].argmax())] for t in output.tasks}
    result["taught"] = [t.name for t in tasks]
    return result
