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

SWITCH_METHODS = ("t-switch", "auto-switch", "pretrained", "flexswitch", "auto-flexswitch")
ROUTED = ("auto-switch", "auto-flexswitch")


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
    def __init__(self, path: str):
        self.path = path
        try:
            with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
                self.manifest = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise SuiteError(f"{path}: unreadable manifest ({exc})") from None
        self.name = self.manifest["name"]
        self.task_names = [t["name"] for t in self.manifest["tasks"]]
        self._lock = threading.RLock()

    @classmethod
    def open(cls, name_or_path: str) -> Suite:
        return cls(resolve_suite(name_or_path))

    def file(self, key: str) -> str:
        return os.path.join(self.path, key)

    @property
    def modality(self) -> str:
        return self.manifest["modality"]

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
                self.adapter, self.adapter.state_dict(), PackedSwitches.from_pack(pack), self.heads, cache_size=16
            )

    @cached_property
    def adapter(self):
        from ..models import load_adapter

        with self._lock:
            spec = self.manifest["adapter"]
            device = "cuda" if torch.cuda.is_available() else "cpu"
            return load_adapter(spec["name"], **{**spec["args"], "device": device})

    @cached_property
    def heads(self) -> dict[str, Head]:
        from safetensors.torch import load_file

        tensors = load_file(self.file(self.manifest.get("heads", "heads.safetensors")))
        return {
            t["name"]: Head(
                tensors[f"{t['name']}.weight"],
                tensors[f"{t['name']}.bias"],
                tuple(t["labels"]),
                bool(t.get("normalize", False)),
                tensors.get(f"{t['name']}.dense.weight"),
                tensors.get(f"{t['name']}.dense.bias"),
            )
            for t in self.manifest["tasks"]
        }

    @cached_property
    def pack(self):
        return self._checked_pack(self.manifest["pack"])

    @cached_property
    def router(self):
        from ..routing import KNNRouter

        return KNNRouter.load(self.file(self.manifest["router"]["file"]))

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

    # -- FlexSwitch (manifest["flex"], written by tswitch.flex.results.write) --------------------
    @property
    def has_flex(self) -> bool:
        """Whether the suite serves FlexSwitch and Auto-FlexSwitch (a learned pack and router)."""
        return bool(self.manifest.get("flex"))

    def _flex(self) -> dict:
        if not self.has_flex:
            raise SuiteError(
                f"suite {self.name} has no FlexSwitch pack; learn one with python -m tswitch flex "
                f"--suite {self.name}, then python -m tswitch flex --suite {self.name} --collect"
            )
        return self.manifest["flex"]

    @cached_property
    def flex_pack(self):
        return self._checked_pack(self._flex()["pack"])

    @cached_property
    def flex_router(self):
        from ..routing.low_rank import LowRankRouter

        return LowRankRouter.load(self.file(self._flex()["router"]["file"]))

    @cached_property
    def flex_engine(self):
        return self._engine_over(self.flex_pack)

    @cached_property
    def auto_flexswitch(self):
        """Auto-FlexSwitch: the learned switches routed by the low-rank router (journal Eq. 18-19)."""
        from ..merging import AutoSwitch

        with self._lock:
            return AutoSwitch(self.flex_engine, self.flex_router)

    def router_for(self, method: str = "auto-switch"):
        """The routed method's :class:`AutoSwitch` (``auto-switch`` or ``auto-flexswitch``)."""
        if method not in ROUTED:
            raise SuiteError(f"unknown routing method {method!r}; valid: {', '.join(ROUTED)}")
        return self.auto_switch if method == "auto-switch" else self.auto_flexswitch

    def default_k(self, method: str = "auto-switch") -> int:
        return int((self.manifest["router"] if method == "auto-switch" else self._flex()["router"])["k"])

    # -- serving -------------------------------------------------------------------------------
    def route(self, inputs: Sequence, k: int | None = None, top: int = 5, method: str = "auto-switch") -> list[dict]:
        """Route every input (Auto-Switch, or Auto-FlexSwitch with ``method="auto-flexswitch"``);
        JSON-ready diagnostics and the routed task's top predictions. Auto-FlexSwitch's neighbours
        are K-means centres, not exemplars (``exemplar`` is then ``None``)."""
        from ..routing import diagnostics

        auto = self.router_for(method)
        k = k or self.default_k(method)
        batch = self.adapter.preprocess(list(inputs))
        output, route = auto.predict(batch, k=k)
        results = []
        for b in range(len(inputs)):
            diag = diagnostics(route, b)
            for n in diag["neighbours"]:
                if method == "auto-flexswitch":
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
        for t in self.manifest["tasks"]:
            data = apply_split(load_task(t["loader"]["name"], **t["loader"]["args"]), splits[t["name"]][split])
            sets[t["name"]] = EvalSet.build(
                self.adapter, t["name"], data.inputs, data.labels, self.manifest.get("eval_batch", 64), limit
            )
        return sets

    def evaluate(self, method: str, split: str = "test", limit: int | None = None, k: int | None = None) -> dict:
        """Recompute a switch-based method's numbers from the committed files."""
        from .evaluate import evaluate_auto_switch, evaluate_routed, evaluate_static, evaluate_tswitch, switch_bytes

        sets = self.eval_sets(split, limit)
        if method == "pretrained":
            return {**evaluate_static(self.adapter, self.heads, sets, None), "extra_bytes": 0}
        if method == "t-switch":
            return evaluate_tswitch(self.engine, sets, self.pack.header)
        if method == "auto-switch":
            return evaluate_auto_switch(
                self.auto_switch, sets, k or int(self.manifest["router"]["k"]), self.pack.header
            )
        if method == "flexswitch":
            return evaluate_tswitch(self.flex_engine, sets, self.flex_pack.header)
        if method == "auto-flexswitch":
            out = evaluate_routed(self.auto_flexswitch, self.heads, sets, k or self.default_k(method))
            return {**out, "extra_bytes": switch_bytes(self.flex_pack.header) + self.flex_router.nbytes}
        raise SuiteError(
            f"method {method!r} cannot be recomputed from a suite's files; valid: "
            f"{', '.join(SWITCH_METHODS)} (the others need the fine-tuned checkpoints: "
            f"rebuild with demos/build_suite.py)"
        )
