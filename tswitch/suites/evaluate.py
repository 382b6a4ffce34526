"""Evaluating a suite's tasks under a merge method.

A method gives each task's test inputs a set of weights in one of three ways:

- *static*: one merged model for every task (weight averaging, task arithmetic, TIES, DARE);
- *per task* (oracle task id): the task's own weights (Individual, T-Switch Eq. 7, EMR, TALL);
- *routed* (Auto-Switch, Eq. 8): per-sample weights from the k-NN router, run through the engine.

Every task is scored with its own frozen head (``../shared/PROTOCOL.md``), as in the papers; for
routed methods the routing accuracy (routed task == true task) is reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..models.base import Batch, Head

Weights = Mapping[str, torch.Tensor] | None

# Decoded float32 deltas an evaluation engine may hold (``DynamicMergeEngine(dense_bytes=...)``). With
# them a routed evaluation takes each batch in one multi-tenant forward (dense GEMMs over each task's
# rows) instead of one merge per distinct weight vector: on text-minilm's test split (8,000 items,
# 1,456 weight vectors at C 10) 5.6x faster, the same predictions (docs/ENGINE.md). 2 GiB holds
# 8 MiniLM-sized task vectors at any density; serving keeps the packed form (budget 0).
EVAL_DENSE_BYTES = 2 << 30


@dataclass
class EvalSet:
    """One task's split, preprocessed once into batches.

    Text batches are padded to their longest item, so the items are batched in order of length
    (:func:`_by_length`; a stable sort, so inputs without an ``attention_mask`` keep their order):
    on the text suite's test sets that pads 291 k instead of 469 k tokens. ``order[i]`` is the
    split position of the ``i``-th item here; ``labels`` and :meth:`routing_features` follow the
    batches' order, and :meth:`head` still takes the split's *first* ``n`` items.
    """

    task: str
    batches: list[Batch]
    labels: np.ndarray
    route_features: torch.Tensor | None = None  # (N, D_r), filled lazily
    order: np.ndarray | None = None  # (N,) split positions in batch order; None: the split's order

    @classmethod
    def build(
        cls, adapter, task: str, inputs: Sequence, labels, batch_size: int = 64, limit: int | None = None
    ) -> EvalSet:
        inputs, labels = list(inputs), np.asarray(labels)
        if limit is not None:
            inputs, labels = inputs[:limit], labels[:limit]
        batches = [adapter.preprocess(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
        order = _by_length(batches)
        if order is None:
            return cls(task, batches, labels)
        inputs = [inputs[i] for i in order]
        batches = [adapter.preprocess(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
        return cls(task, batches, labels[order], order=order)

    def head(self, n: int | None) -> EvalSet:
        """The split's first ``n`` examples (all when ``n`` is None), wherever length put them."""
        if n is None or n >= len(self.labels):
            return self
        order = self.order if self.order is not None else np.arange(len(self.labels))
        keep = order < n
        batches, at = [], 0
        for b in self.batches:
            size = next(iter(b.values())).shape[0]
            rows = torch.as_tensor(np.flatnonzero(keep[at : at + size]))
            at += size
            if len(rows) == size:
                batches.append(b)
            elif len(rows):
                batches.append({k: v.index_select(0, rows.to(v.device)) for k, v in b.items()})
        return EvalSet(self.task, batches, self.labels[keep], order=None if self.order is None else order[keep])

    def routing_features(self, adapter) -> torch.Tensor:
        if self.route_features is None:
            self.route_features = torch.cat([adapter.route_features(b) for b in self.batches]).float()
        return self.route_features


def _by_length(batches: Sequence[Batch]) -> np.ndarray | None:
    """The stable order of the items by ``attention_mask`` length, or ``None`` when the batches have
    no mask (images) or the items already come in that order."""
    if not batches or any("attention_mask" not in b for b in batches):
        return None
    lengths = torch.cat([b["attention_mask"].sum(-1) for b in batches]).cpu().numpy()
    order = np.argsort(lengths, kind="stable")
    return None if bool((order == np.arange(len(order))).all()) else order


class InvalidWeights(ValueError):
    """A merged model computes non-finite features (e.g. a BatchNorm variance pushed below zero)."""


def accuracy(adapter, head: Head, data: EvalSet, weights: Weights) -> float:
    """Top-1 accuracy of ``head`` on ``data`` with backbone ``weights`` (``None``: pre-trained).

    Raises:
        InvalidWeights: the features are not finite. The argmax of NaN logits is a constant class,
            which once turned whole result tables into one constant number (BatchNorm running
            variances rescaled or binarised below zero); such weights are an error, not a score.
    """
    correct = 0
    for batch, start in zip(data.batches, _starts(data)):
        feats = adapter.features(batch, weights)
        if not bool(torch.isfinite(feats).all()):
            raise InvalidWeights(
                f"{data.task}: the weights give non-finite features (a negative BatchNorm variance? "
                f"fine-tune with frozen BatchNorm statistics, PROTOCOL.md)"
            )
        preds = head(feats).argmax(-1).numpy()
        correct += int((preds == data.labels[start : start + len(preds)]).sum())
    return correct / max(1, len(data.labels))


def _starts(data: EvalSet) -> list[int]:
    sizes = [next(iter(b.values())).shape[0] for b in data.batches]
    return list(np.cumsum([0] + sizes[:-1]))


def evaluate_static(adapter, heads: Mapping[str, Head], sets: Mapping[str, EvalSet], weights: Weights) -> dict:
    return _summary({t: accuracy(adapter, heads[t], s, weights) for t, s in sets.items()})


def evaluate_per_task(
    adapter, heads: Mapping[str, Head], sets: Mapping[str, EvalSet], weights_for: Callable[[str], Weights]
) -> dict:
    return _summary({t: accuracy(adapter, heads[t], s, weights_for(t)) for t, s in sets.items()})


def evaluate_routed(auto_switch, heads: Mapping[str, Head], sets: Mapping[str, EvalSet], k: int) -> dict:
    """Auto-Switch: route every test sample on its own, merge, score with the true task's head.

    Also reports ``routing_accuracy`` and ``routed_head_accuracy`` (the prediction a deployed
    system makes: the head of the highest-weight task, wrong whenever the route is).

    Every sample runs under exactly its own merged weights (``engine.run``), visited as the engine's
    strategy is cheapest (:func:`_routed_outputs`).
    """
    engine, router = auto_switch.engine, auto_switch.router
    adapter = engine.adapter
    per_task, routed_ok, routed_head_ok, total = {}, 0, 0, 0
    for task, data in sets.items():
        feats = data.routing_features(adapter)
        weights, routed_all = auto_switch.engine_view(router.route(feats, k=k))  # engine order
        n_items = len(data.labels)
        preds = np.full(n_items, -1, dtype=np.int64)
        routed = np.asarray(routed_all[:n_items].tolist(), dtype=np.int64)
        for local, out in _routed_outputs(engine, data, weights[:n_items], routed_all[:n_items]):
            if not bool(torch.isfinite(out.features).all()):
                raise InvalidWeights(f"{task}: merged weights give non-finite features")
            preds[local] = out.logits[task].argmax(-1).cpu().numpy()
        labels = data.labels[:n_items]
        own = routed == engine.tasks.index(task)
        correct = preds == labels
        per_task[task] = float(correct.sum()) / max(1, n_items)
        routed_ok += int(own.sum())
        routed_head_ok += int((own & correct).sum())
        total += n_items
    summary = _summary(per_task)
    summary["routing_accuracy"] = routed_ok / max(1, total)
    summary["routed_head_accuracy"] = routed_head_ok / max(1, total)
    return summary


def _routed_outputs(engine, data: EvalSet, weights: torch.Tensor, routed: torch.Tensor):
    """``(item indices, engine output)`` over ``data``, every item under its own weights.

    A merging engine visits the items grouped by weight vector (each group's rows of every batch in
    turn), so each distinct vector is merged once per task instead of once per batch it appears in;
    a multi-tenant engine (``strategy`` ``tenant`` or ``auto``, unless it found its switches or
    architecture unfit for it) takes each batch whole, in one forward whatever the number of vectors
    in it.
    """
    starts = _starts(data)
    if engine.strategy != "merge" and not engine.unsupported:
        for batch, start in zip(data.batches, starts):
            n = next(iter(batch.values())).shape[0]
            local = np.arange(start, start + n)
            yield local, engine.run(batch, weights[start : start + n], routed_task=routed[start : start + n])
        return
    groups: dict[tuple[float, ...], list[int]] = {}
    for i, row in enumerate(weights.tolist()):
        groups.setdefault(engine.weight_key(row), []).append(i)
    for rows in groups.values():
        index = np.asarray(rows)
        for batch, start in zip(data.batches, starts):
            n = next(iter(batch.values())).shape[0]
            local = index[(index >= start) & (index < start + n)]
            if not len(local):
                continue
            pos = torch.as_tensor(local - start)
            sub = batch if len(local) == n else {name: t.index_select(0, pos.to(t.device)) for name, t in batch.items()}
            rows_t = torch.as_tensor(local)
            yield local, engine.run(sub, weights[rows_t], routed_task=routed[rows_t])


def switch_bytes(header) -> int:
    """Storage of a pack's switches: every task's payloads and scales (``TaskEntry.total_bytes``)."""
    return sum(t.total_bytes for t in header.tasks)


def evaluate_tswitch(engine, sets: Mapping[str, EvalSet], header) -> dict:
    """T-Switch (Eq. 7): each task under its own switch (one-hot weights), and the pack's bytes."""
    eye = torch.eye(len(engine.tasks))
    out = evaluate_per_task(
        engine.adapter, engine.heads, sets, lambda t: engine.merged_weights(eye[engine.tasks.index(t)])
    )
    return {**out, "extra_bytes": switch_bytes(header)}


def evaluate_auto_switch(auto_switch, sets: Mapping[str, EvalSet], k: int, header) -> dict:
    """Auto-Switch (Eq. 8) via :func:`evaluate_routed`; storage = switches + router exemplars."""
    out = evaluate_routed(auto_switch, auto_switch.engine.heads, sets, k)
    return {**out, "extra_bytes": switch_bytes(header) + 4 * auto_switch.router.features.numel()}


def _summary(per_task: dict[str, float]) -> dict:
    return {"per_task": per_task, "average": float(np.mean(list(per_task.values()))) if per_task else 0.0}
