"""Every method and analysis of a suite's ``results.json``, on prepared tasks.

Hyper-parameters are chosen on validation and reported on test (``../shared/PROTOCOL.md``):
task arithmetic / TIES / DARE ``lambda``, TALL's per-task ``lambda``, T-Switch ``alpha``,
Auto-Switch ``alpha`` and ``k``. Random methods (DARE) report the mean over ``spec.seeds``.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from ..core.binary import b_approx
from ..core.pspar import pulse_mask
from ..core.task_vector import TaskVector
from ..merging import (
    AutoSwitch,
    DynamicMergeEngine,
    PackedSwitches,
    dare,
    emr_components,
    norm_rescaled_average,
    tall_mask_components,
    task_arithmetic,
    ties,
    weight_average,
)
from ..pack import SwitchPack, create_pack, encode_task, tensor_specs
from ..routing import KNNRouter
from .evaluate import EVAL_DENSE_BYTES, evaluate_auto_switch, evaluate_per_task, evaluate_static, evaluate_tswitch
from .files import Log
from .stages import StageCache
from .train import extract_features


def _bytes_float32(n: int) -> int:
    return 4 * n


class Experiments:
    """Runs the methods on a :class:`tswitch.suites.build.Prepared`; results are plain dicts."""

    def __init__(self, prep, log: Log = print, workdir: str | None = None, stages: StageCache | None = None):
        self.prep, self.spec, self.log = prep, prep.spec, log
        self.stages = stages  # finished stages of an earlier run of this build (resumable builds)
        self.adapter, self.heads = prep.adapter, prep.heads
        self.names = list(prep.tasks)
        self.taus = [prep.tasks[t].tau for t in self.names]
        self.floating = {k: v for k, v in prep.base.items() if torch.is_floating_point(v)}
        self.n = sum(v.numel() for v in self.floating.values())
        self.workdir = workdir or tempfile.mkdtemp(prefix="tswitch-build-")
        self.exemplar_index: dict[str, list[int]] = {}  # task -> train positions of its Auto-Switch exemplars
        self.router = self._router()

    # -- helpers -------------------------------------------------------------------------------
    def stage(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, or its stored value when an earlier run of this build finished it."""
        return compute() if self.stages is None else self.stages.get(key, compute)

    def generator(self, *parts: object) -> torch.Generator:
        """A generator seeded by ``spec.seeds[0]`` and the stage's name: a stage's random draws do
        not depend on which stages ran before it (so a resumed build equals a fresh one)."""
        tag = zlib.crc32("/".join(map(str, parts)).encode())
        return torch.Generator().manual_seed(self.spec.seeds[0] * 2**32 + tag)

    def apply(self, delta: TaskVector) -> dict[str, torch.Tensor]:
        return delta.apply_to(self.prep.base)

    def sets(self, split: str) -> dict:
        """``"analysis"`` is the first ``spec.analysis_limit`` test examples of each task."""
        if split == "analysis":
            return {t: s.head(self.spec.analysis_limit) for t, s in self.prep.sets("test").items()}
        return self.prep.sets(split)

    def static(self, split: str, delta: TaskVector | None) -> dict:
        weights = None if delta is None else self.apply(delta)
        return evaluate_static(self.adapter, self.heads, self.sets(split), weights)

    def per_task(self, split: str, deltas: dict[str, TaskVector]) -> dict:
        return evaluate_per_task(self.adapter, self.heads, self.sets(split), lambda t: self.apply(deltas[t]))

    def _router(self) -> KNNRouter:
        feats, ids = [], []
        rng = np.random.default_rng(self.spec.split_seed)
        for i, t in enumerate(self.names):
            inputs = self.prep.tasks[t].train_inputs
            pick = sorted(rng.choice(len(inputs), min(self.spec.exemplars_per_task, len(inputs)), replace=False))
            self.exemplar_index[t] = [int(j) for j in pick]
            feats.append(
                extract_features(self.adapter, [inputs[j] for j in pick], route=True, batch_size=self.spec.eval_batch)
            )
            ids += [i] * len(pick)
        return KNNRouter(torch.cat(feats), torch.tensor(ids), self.names, k=self.spec.k_grid[0])

    def pack(self, alpha: float, dense_pattern: str | None) -> str:
        """Write (once) the T-Switch pack of every task at ``alpha``; returns its path."""
        tag = f"{alpha:g}-{'dense' if dense_pattern else 'bin'}"
        path = os.path.join(self.workdir, f"switches-{tag}.tsw")
        if not os.path.exists(path):
            specs = tensor_specs(self.floating)
            tasks = [
                encode_task(t, tau, specs, alpha, "sass", dense_pattern, labels=self.prep.tasks[t].label_names)
                for t, tau in zip(self.names, self.taus)
            ]
            create_pack(path, self.floating, tasks)
        return path

    def engine(self, pack: SwitchPack) -> DynamicMergeEngine:
        switches = PackedSwitches.from_pack(pack)
        return DynamicMergeEngine(
            self.adapter,
            self.prep.base,
            switches,
            self.heads,
            cache_size=8,
            strategy="auto",
            dense_bytes=EVAL_DENSE_BYTES,
        )

    def tswitch(self, split: str, path: str) -> dict:
        pack = SwitchPack(path)
        return evaluate_tswitch(self.engine(pack), self.prep.sets(split), pack.header)

    def auto_switch(self, split: str, path: str, k: int) -> dict:
        pack = SwitchPack(path)
        return evaluate_auto_switch(AutoSwitch(self.engine(pack), self.router), self.prep.sets(split), k, pack.header)

    # -- the methods -----------------------------------------------------------------------------
    def baselines(self) -> dict:
        """Pre-trained, Individual, averaging, TA, TIES, DARE, EMR, TALL (test, tuned on val)."""
        K, n, res = len(self.names), self.n, {}
        res["pretrained"] = self.stage("pretrained", lambda: {**self.static("test", None), "extra_bytes": 0})
        res["individual"] = self.stage(
            "individual",
            lambda: {
                **evaluate_per_task(
                    self.adapter, self.heads, self.prep.sets("test"), lambda t: self.prep.tasks[t].finetuned
                ),
                "extra_bytes": K * _bytes_float32(n),
            },
        )
        res["weight_average"] = self.stage(
            "weight_average",
            lambda: {**self.static("test", weight_average(self.taus)), "extra_bytes": _bytes_float32(n)},
        )
        for name, fn in (
            ("task_arithmetic", lambda lam: task_arithmetic(self.taus, lam=lam)),
            ("ties", lambda lam: ties(self.taus, lam=lam)),
        ):
            res[name] = self.stage(name, partial(self._tuned_static, fn))
        res["dare"] = self.stage("dare", self._dare)
        res["emr_merging"] = self.stage("emr_merging", self._emr)
        res["tall_masks"] = self.stage("tall_masks", self._tall)
        return res

    def _tuned_static(self, fn: Callable[[float], TaskVector]) -> dict:
        """A static merge with ``lambda`` chosen on validation, reported on test."""
        lam = self._pick([(lam, self.static("val", fn(lam))) for lam in self.spec.lambda_grid])
        return {**self.static("test", fn(lam)), "extra_bytes": _bytes_float32(self.n), "hyper": {"lam": lam}}

    def _dare(self) -> dict:
        """DARE (drop 0.9): ``lambda`` chosen on validation with the first seed, test = mean over seeds."""
        lam = self._pick(
            [
                (lam, self.static("val", dare(self.taus, lam=lam, seed=self.spec.seeds[0])))
                for lam in self.spec.lambda_grid
            ]
        )
        runs = [self.static("test", dare(self.taus, lam=lam, seed=s)) for s in self.spec.seeds]
        return {
            **_mean_runs(runs),
            "extra_bytes": _bytes_float32(self.n),
            "hyper": {"lam": lam, "drop": 0.9, "seeds": list(self.spec.seeds)},
        }

    def _emr(self) -> dict:
        emr = emr_components(self.taus)
        return {
            **self.per_task("test", dict(zip(self.names, emr.task_vectors()))),
            "extra_bytes": emr.storage_bits() // 8,
        }

    def _tall(self) -> dict:
        """TALL masks with ``lambda`` picked per task on validation, as the paper does."""
        best: dict[str, tuple[float, float]] = {}
        comps = {lam: tall_mask_components(self.taus, lam=lam) for lam in self.spec.tall_grid}
        for lam, comp in comps.items():
            val = self.per_task("val", dict(zip(self.names, comp.task_vectors())))
            for t in self.names:
                if t not in best or val["per_task"][t] > best[t][1]:
                    best[t] = (lam, val["per_task"][t])
        chosen = {t: comps[best[t][0]].task_vector(i) for i, t in enumerate(self.names)}
        any_comp = next(iter(comps.values()))
        return {
            **self.per_task("test", chosen),
            "extra_bytes": any_comp.storage_bits() // 8,
            "hyper": {"lam": {t: best[t][0] for t in self.names}},
        }

    def _tswitch_stage(self, option: str, alpha: float, split: str) -> dict:
        pattern = self.spec.dense_options[option]
        return self.stage(
            f"t-switch/{option}/{alpha:g}/{split}", lambda: self.tswitch(split, self.pack(alpha, pattern))
        )

    def _auto_stage(self, option: str, alpha: float, k: int, split: str) -> dict:
        pattern = self.spec.dense_options[option]
        return self.stage(
            f"auto-switch/{option}/{alpha:g}/k{k}/{split}",
            lambda: self.auto_switch(split, self.pack(alpha, pattern), k),
        )

    def switch_grid(self) -> dict:
        """T-Switch over the alpha grid (and BatchNorm options), val and test; Auto-Switch on test at
        the alphas of ``spec.grid_auto_switch`` (all when ``None``)."""
        grid: dict[str, Any] = {}
        k0 = self.spec.k_grid[len(self.spec.k_grid) // 2]
        auto_at = self.spec.alpha_grid if self.spec.grid_auto_switch is None else self.spec.grid_auto_switch
        for option in self.spec.dense_options:
            for alpha in self.spec.alpha_grid:
                row: dict[str, Any] = {"t-switch": {s: self._tswitch_stage(option, alpha, s) for s in ("val", "test")}}
                # Auto-Switch's alpha is T-Switch's (one pack serves both): its validation is read
                # only at the chosen alpha, to pick k (choose_switch), so the grid holds its test row
                if any(abs(alpha - a) < 1e-9 for a in auto_at):
                    row["auto-switch"] = {"test": self._auto_stage(option, alpha, k0, "test")}
                grid.setdefault(option, {})[f"{alpha:g}"] = row
                auto = row.get("auto-switch", {}).get("test")
                self.log(
                    f"alpha {alpha:g} ({option}): T-Switch test {row['t-switch']['test']['average']:.4f}"
                    + (
                        f", Auto-Switch test {auto['average']:.4f} (routing {auto['routing_accuracy']:.4f})"
                        if auto
                        else ""
                    )
                )
        return grid

    def choose_switch(self, grid: dict) -> dict:
        """Pick (BatchNorm option, alpha) for T-Switch, then k for Auto-Switch, on validation."""
        option, alpha = max(
            ((o, a) for o, rows in grid.items() for a in rows),
            key=lambda oa: (grid[oa[0]][oa[1]]["t-switch"]["val"]["average"], float(oa[1])),
        )
        path = self.pack(float(alpha), self.spec.dense_options[option])
        sweep = {k: self._auto_stage(option, float(alpha), k, "val") for k in self.spec.k_grid}
        k = self._pick(list(sweep.items()))
        # the C sweep (T-Switch Tab. 5 analogue): every k on test too, reported, not used to choose
        k_sweep = {
            str(c): {"val": sweep[c]["average"], "test": self._auto_stage(option, float(alpha), c, "test")["average"]}
            for c in self.spec.k_grid
        }
        # one pack serves both: the alpha T-Switch prefers on validation (ties: the sparser)
        return {
            "dense_option": option,
            "dense_pattern": self.spec.dense_options[option],
            "alpha": float(alpha),
            "k": k,
            "k_sweep": k_sweep,
            "pack": path,
        }

    def pulse(self) -> dict:
        """T-Switch Fig. 3 / journal Fig. 1: keep-high (C1) vs keep-low (C2) vs random (C3), per task."""
        out: dict[str, Any] = {}
        for cond, mode in (("keep_high", "low"), ("keep_low", "high"), ("random", "random")):
            out[cond] = {}
            for alpha in self.spec.pulse_grid:
                out[cond][f"{alpha:g}"] = self.stage(
                    f"pulse/{cond}/{alpha:g}",
                    partial(self._pulse_point, mode, alpha, cond),
                )
        # journal Fig. 2: binarising the kept entries (B-Approx) against keeping them exact (P-Spar)
        out["b_approx"] = {
            f"{alpha:g}": self.stage(
                f"pulse/b_approx/{alpha:g}",
                partial(self._bapprox_point, alpha),
            )
            for alpha in self.spec.pulse_grid
        }
        return out

    def _bapprox_point(self, alpha: float) -> dict:
        deltas = {t: tau.map(lambda _, x: b_approx(x, alpha).reconstruct()) for t, tau in zip(self.names, self.taus)}
        return self.per_task("analysis", deltas)

    def _pulse_point(self, mode: str, alpha: float, cond: str) -> dict:
        gen = self.generator("pulse", cond, f"{alpha:g}")
        scale = 1.0 / (1.0 - alpha) if mode == "random" else 1.0
        deltas = {
            t: tau.map(lambda _, x: scale * x * pulse_mask(x, alpha, mode, gen))  # noqa: B023 (map runs now)
            for t, tau in zip(self.names, self.taus)
        }
        return self.per_task("analysis", deltas)

    def pspar_vs_dare(self) -> dict:
        """T-Switch Table 1 analogue: Eq. 4 merges of P-Discard vs DARE-random vectors."""
        out: dict[str, dict[str, Any]] = {"p-discard": {}, "dare-random": {}}
        for alpha in self.spec.pulse_grid:
            for name, mode in (("p-discard", "low"), ("dare-random", "random")):

                def point(name=name, mode=mode, alpha=alpha) -> dict:
                    gen = self.generator("pspar_vs_dare", name, f"{alpha:g}")
                    sparse = [tau.map(lambda _, x: x * pulse_mask(x, alpha, mode, gen)) for tau in self.taus]  # noqa: B023
                    return self.static("analysis", norm_rescaled_average(self.taus, sparse))

                out[name][f"{alpha:g}"] = self.stage(f"pspar_vs_dare/{name}/{alpha:g}", point)
        return out

    @staticmethod
    def _pick(candidates: list[tuple[float, dict]]) -> float:
        """The hyper-parameter with the best validation average (first on ties)."""
        return max(candidates, key=lambda c: c[1]["average"])[0]


def _mean_runs(runs: list[dict]) -> dict:
    tasks = runs[0]["per_task"]
    per_task = {t: float(np.mean([r["per_task"][t] for r in runs])) for t in tasks}
    return {
        "per_task": per_task,
        "average": float(np.mean(list(per_task.values()))),
        "std_over_seeds": float(np.std([r["average"] for r in runs])),
    }
