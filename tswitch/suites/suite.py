"""A built suite on disk (``docs/SUITE.md``), loaded lazily and shared read-only.

``Suite.open("text-minilm")`` finds ``assets/text-minilm`` (or takes a path). Nothing heavy happens
until it is needed: the backbone, the switches, the router and the engine load on first use, once,
under a lock, and are never modified afterwards, so one ``Suite`` serves concurrent requests.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from functools import cached_property

import torch

from ..assets import ENV_VAR as ASSETS_ENV
from ..assets import assets_dir
from ..models.base import Head
from .manifest import Manifest, ManifestError
from .methods import SERVED, get_method, served_by
from .stats import intervals


class SuiteError(ValueError):
    """A suite is missing or its files are inconsistent."""


def list_suites(root: str | None = None) -> list[str]:
    """Names of the suites under ``root`` (default: :func:`tswitch.assets.assets_dir`)."""
    root = root if root is not None else assets_dir()
    if root is None or not os.path.isdir(root):
        return []
    return sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "manifest.json")))


def resolve_suite(name_or_path: str, root: str | None = None) -> str:
    """A suite folder, or the suite of that name under ``root`` (default: :func:`tswitch.assets.assets_dir`)."""
    if os.path.isfile(os.path.join(name_or_path, "manifest.json")):
        return name_or_path
    root = root if root is not None else assets_dir()
    if root is not None:
        candidate = os.path.join(root, name_or_path)
        if os.path.isfile(os.path.join(candidate, "manifest.json")):
            return candidate
    where = "" if root is not None else f" (give a suite folder, or set ${ASSETS_ENV} to a folder of suites)"
    raise SuiteError(f"unknown suite {name_or_path!r}; available: {', '.join(list_suites(root)) or '(none)'}{where}")


class Suite:
    """A suite folder. ``adapter``: an already loaded backbone of this suite (a builder's), used
    instead of loading one from the manifest; ``router``: a k-NN router over this suite's tasks
    (:func:`tswitch.suites.route_depth.at_depth`'s, for another routing depth), used instead of the
    manifest's ``router.safetensors`` by Auto-Switch; ``dense_bytes``: its engines' budget of decoded
    float32 deltas (:class:`~tswitch.merging.DynamicMergeEngine`): 0 to serve (the app), about
    :data:`~.evaluate.EVAL_DENSE_BYTES` to evaluate whole splits fast (``python -m tswitch eval``, builds)."""

    def __init__(self, path: str, adapter=None, router=None, dense_bytes: int = 0):
        self.path = path
        try:
            self.manifest: Manifest = Manifest.load(path)
        except ManifestError as exc:
            raise SuiteError(str(exc)) from None
        self.name = self.manifest.name
        self.task_names = self.manifest.task_names
        self._lock = threading.RLock()
        self._given_adapter = adapter
        self._given_router = router
        self.dense_bytes = dense_bytes

    @classmethod
    def open(cls, name_or_path: str, dense_bytes: int = 0) -> Suite:
        return cls(resolve_suite(name_or_path), dense_bytes=dense_bytes)

    def file(self, key: str) -> str:
        return os.path.join(self.path, key)

    @property
    def modality(self) -> str:
        return self.manifest.modality

    @property
    def methods(self) -> list[str]:
        """The methods this suite serves (:data:`tswitch.suites.methods.SERVED`)."""
        return served_by(self.manifest)

    def results(self) -> dict:
        with open(self.file("results.json"), encoding="utf-8") as f:
            return json.load(f)

    # -- lazily loaded, read-only parts --------------------------------------------------------
    def _checked_pack(self, file: str):
        """A pack of this suite, refused unless it was made for this suite's backbone."""
        from ..pack import SwitchPack

        with self._lock:
            pack = SwitchPack(self.file(file))
            pack.check_base(self.adapter.state_dict())
            return pack

    def _engine_over(self, pack):
        from ..merging import DynamicMergeEngine, PackedSwitches

        with self._lock:
            return DynamicMergeEngine(
                self.adapter,
                self.adapter.state_dict(),
                PackedSwitches.from_pack(pack),
                self.heads,
                cache_size=16,
                strategy="auto",  # one forward for a batch of new weight vectors; cached ones merged
                dense_bytes=self.dense_bytes,
            )

    @cached_property
    def adapter(self):
        from ..models import load_adapter

        with self._lock:
            if self._given_adapter is not None:
                return self._given_adapter
            device = "cuda" if torch.cuda.is_available() else "cpu"
            return load_adapter(self.manifest.adapter, **{**self.manifest.adapter_args, "device": device})

    @cached_property
    def heads(self) -> dict[str, Head]:
        from safetensors.torch import load_file

        tensors = load_file(self.file(self.manifest.heads))
        return {
            t.name: Head(
                tensors[f"{t.name}.weight"],
                tensors[f"{t.name}.bias"],
                t.labels,
                t.normalize,
                tensors.get(f"{t.name}.dense.weight"),
                tensors.get(f"{t.name}.dense.bias"),
            )
            for t in self.manifest.tasks
        }

    @cached_property
    def pack(self):
        return self._checked_pack(self.manifest.pack)

    @cached_property
    def router(self):
        from ..routing import KNNRouter

        if self._given_router is not None:
            return self._given_router
        return KNNRouter.load(self.file(self.manifest.router.file))

    @cached_property
    def exemplars(self) -> list[dict]:
        with open(self.file("exemplars.json"), encoding="utf-8") as f:
            return json.load(f)

    @cached_property
    def engine(self):
        return self._engine_over(self.pack)

    @cached_property
    def auto_switch(self):
        from ..merging import AutoSwitch

        with self._lock:
            return AutoSwitch(self.engine, self.router)

    # -- FlexSwitch (Manifest.flex, written by tswitch.suites.flex_results.write) -------------------
    @property
    def has_flex(self) -> bool:
        """Whether the suite serves FlexSwitch and Auto-FlexSwitch (a learned pack and router)."""
        return self.manifest.flex is not None

    def _flex(self):
        if self.manifest.flex is None:
            raise SuiteError(
                f"suite {self.name} has no FlexSwitch pack; learn one with python -m tswitch flex "
                f"--suite {self.name}, then python -m tswitch flex --suite {self.name} --collect"
            )
        return self.manifest.flex

    @cached_property
    def flex_pack(self):
        return self._checked_pack(self._flex().pack)

    @cached_property
    def flex_router(self):
        from ..routing.low_rank import LowRankRouter

        return LowRankRouter.load(self.file(self._flex().router.file))

    @cached_property
    def flex_engine(self):
        return self._engine_over(self.flex_pack)

    @cached_property
    def auto_flexswitch(self):
        """Auto-FlexSwitch: the learned switches routed by the low-rank router (journal Eq. 18-19)."""
        from ..merging import AutoSwitch

        with self._lock:
            return AutoSwitch(self.flex_engine, self.flex_router)

    def _served(self, method: str, routed: bool = False):
        try:
            m = get_method(method)
        except ValueError as exc:
            raise SuiteError(str(exc)) from None
        if routed and not m.routed:
            valid = ", ".join(n for n, x in SERVED.items() if x.routed)
            raise SuiteError(f"unknown routing method {method!r}; valid: {valid}")
        if not m.available(self.manifest):
            self._flex()  # the one kind of method a suite may lack: says how to add it
            raise SuiteError(f"suite {self.name} does not serve {method!r}")
        return m

    def router_for(self, method: str = "auto-switch"):
        """The routed method's :class:`AutoSwitch` (router + engine)."""
        return self._served(method, routed=True).pipeline(self)

    def default_k(self, method: str = "auto-switch") -> int:
        return self._served(method, routed=True).default_k(self.manifest)

    # -- serving -------------------------------------------------------------------------------
    def route(self, inputs: Sequence, k: int | None = None, top: int = 5, method: str = "auto-switch") -> list[dict]:
        """Route every input (Auto-Switch, or Auto-FlexSwitch with ``method="auto-flexswitch"``);
        JSON-ready diagnostics and the routed task's top predictions. Auto-FlexSwitch's neighbours
        are K-means centres, not exemplars (``exemplar`` is then ``None``)."""
        from ..routing import diagnostics

        served = self._served(method, routed=True)
        auto = served.pipeline(self)
        k = k or served.default_k(self.manifest)
        batch = self.adapter.preprocess(list(inputs))
        output, route = auto.predict(batch, k=k)
        results = []
        for b in range(len(inputs)):
            diag = diagnostics(route, b)
            for n in diag["neighbours"]:
                if served.neighbours == "centres":
                    n["centre"], n["exemplar"], n["exemplar_preview"] = n["exemplar"], None, None
                else:
                    n["exemplar_preview"] = self.exemplars[n["exemplar"]].get("text") if self.exemplars else None
            task = output.tasks[int(output.routed_task[b])]
            probs = output.probs_routed[b]
            order = torch.argsort(probs, descending=True)[:top].tolist()
            diag["routed_task"] = task
            diag["prediction"] = {self.heads[task].labels[i]: float(probs[i]) for i in order}
            diag["all_tasks"] = {t: self.heads[t].labels[int(output.logits[t][b].argmax())] for t in output.tasks}
            results.append(diag)
        return results

    # -- evaluation ----------------------------------------------------------------------------
    def eval_sets(self, split: str = "test", limit: int | None = None):
        from .data import apply_split, load_task
        from .evaluate import EvalSet

        with open(self.file("splits.json"), encoding="utf-8") as f:
            splits = json.load(f)
        sets = {}
        for t in self.manifest.tasks:
            data = apply_split(load_task(t.loader["name"], **t.loader.get("args", {})), splits[t.name][split])
            sets[t.name] = EvalSet.build(
                self.adapter, t.name, data.inputs, data.labels, self.manifest.eval_batch, limit
            )
        return sets

    def routing_confusion(
        self, split: str = "test", k: int | None = None, method: str = "auto-switch", limit: int | None = None
    ) -> dict:
        """Where a routed method sends each task's items: ``matrix[i][j]`` = items of task ``i``
        whose largest switch weight (Eq. 8) is task ``j``'s. Routing only (no merged forward).

        Returns:
            ``{"method", "k", "split", "tasks", "matrix", "recall" (per task), "accuracy"}``.
        """
        pipeline = self.router_for(method)
        c = self.default_k(method) if k is None else k
        sets = self.eval_sets(split, limit)
        tasks = list(pipeline.engine.tasks)
        matrix = [[0] * len(tasks) for _ in tasks]
        for task, data in sets.items():
            _, routed = pipeline.engine_view(pipeline.router.route(data.routing_features(self.adapter), k=c))
            row = matrix[tasks.index(task)]
            for r in routed.tolist():
                row[int(r)] += 1
        recall = {t: matrix[i][i] / max(1, sum(matrix[i])) for i, t in enumerate(tasks)}
        total = sum(map(sum, matrix))
        return {
            "method": method,
            "k": c,
            "split": split,
            "tasks": tasks,
            "matrix": matrix,
            "recall": recall,
            "accuracy": sum(matrix[i][i] for i in range(len(tasks))) / max(1, total),
        }

    def evaluate(self, method: str, split: str = "test", limit: int | None = None, k: int | None = None) -> dict:
        """Recompute a served method's numbers from the committed files (:data:`SERVED`)."""
        served = self._served(method)
        sets = self.eval_sets(split, limit)
        out = served.evaluate(self, sets, k)
        return {**out, **intervals(out, {t: len(s.labels) for t, s in sets.items()})}
