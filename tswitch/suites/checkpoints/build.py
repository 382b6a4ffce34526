"""Build a suite from given checkpoints: a base, one fine-tune per task, data on disk.

The offline suites fine-tune their tasks here (:func:`tswitch.suites.build.prepare`); real
checkpoints arrive fine-tuned, with zero-shot (CLIP) or fine-tuned (RoBERTa) heads. After
:func:`prepare_given` both paths are the same code: :func:`tswitch.suites.build.finish_build` runs
every method (baselines, T-Switch / Auto-Switch alpha grid, pulse analyses) and writes the suite
folder of ``docs/SUITE.md``. The folder is written under a temporary name and renamed at the end,
so a failed build leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace

from ..build import Log, Prepared, cache_root, task_state
from ..data import load_task, make_splits
from ..data.external import part_ids
from ..spec import ALPHA_GRID, PULSE_GRID, SuiteSpec, TaskSpec
from .families import CheckpointError, ClipText, get_family, local_or_hub


@dataclass(frozen=True)
class GivenTask:
    """One task: its fine-tuned checkpoint and its data (a loader of :mod:`tswitch.suites.data`)."""

    name: str
    finetuned: str  # Hugging Face folder, Hub id, .safetensors or (trusted) pickle
    loader: str  # "image-folder", "hf-disk" or "text-table"
    loader_args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GivenSuite:
    """A real-checkpoint suite and how to evaluate it.

    Split sizes are per task and at most: the papers report the full test sets; a cap keeps the
    preprocessed test images in memory (SUN397's 19,850 at 224 px are 12 GB of float32). The
    validation split (hyper-parameters: alpha, k, lambdas) comes from the train part, as do the
    Auto-Switch exemplars (N = 100 per task, T-Switch §4.1).
    """

    name: str
    family: str  # "clip" or "roberta"
    base: str
    tasks: tuple[GivenTask, ...]
    text_model: str | None = None  # CLIP text tower for zero-shot heads (default: the base)
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64
    train_per_task: int = 1000  # exemplar pool (train part)
    val_per_task: int = 500  # validation (train part)
    test_per_task: int | None = 2000  # None: the whole test part
    exemplars_per_task: int = 100
    trust_pickle: bool = False
    quick: bool = False  # small grids (tests, smoke runs)
    seed: int = 0

    def __post_init__(self) -> None:
        get_family(self.family)
        if not self.tasks:
            raise ValueError("at least one task is needed")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        if self.batch_size < 1 or self.train_per_task < 1 or self.val_per_task < 1:
            raise ValueError("batch size and split sizes must be >= 1")
        if self.test_per_task is not None and self.test_per_task < 1:
            raise ValueError(f"test_per_task must be >= 1 or None, got {self.test_per_task}")

    def spec(self) -> SuiteSpec:
        """The :class:`SuiteSpec` the shared experiments and writer read."""
        fam = get_family(self.family)
        tasks = tuple(
            TaskSpec(
                t.name,
                t.loader,
                dict(t.loader_args),
                train=self.train_per_task,
                val=self.val_per_task,
                test=self.test_per_task or 0,
            )
            for t in self.tasks
        )
        spec = SuiteSpec(
            name=self.name,
            modality=fam.modality,
            adapter=fam.adapter,
            adapter_args={**fam.adapter_args(self.base), "dtype": self.dtype},
            tasks=tasks,
            exemplars_per_task=self.exemplars_per_task,
            k_grid=(5, 10, 20),
            alpha_grid=ALPHA_GRID,
            pulse_grid=PULSE_GRID,
            eval_batch=self.batch_size,
            split_seed=self.seed,
            analysis_limit=300,
        )
        if self.quick:
            spec = replace(
                spec,
                k_grid=(3,),
                alpha_grid=(0.5, 0.9),
                pulse_grid=(0.5,),
                lambda_grid=(0.3,),
                tall_grid=(0.4,),
                seeds=(0,),
                analysis_limit=8,
                smoke=True,
            )
        return spec


def _splits(data, cfg: GivenSuite) -> dict[str, list[str]]:
    """Train and val from the train part, test from the test part; stratified, seeded."""
    train_ids, train_labels = part_ids(data, "train")
    test_ids, test_labels = part_ids(data, "test")
    if not train_ids or not test_ids:
        raise CheckpointError(f"{data.source}: needs a train and a test part")
    n_val = min(cfg.val_per_task, len(train_ids) // 2)
    n_train = min(cfg.train_per_task, len(train_ids) - n_val)
    first = make_splits(train_ids, train_labels, sizes=(n_train, n_val), names=("train", "val"), seed=cfg.seed)
    n_test = len(test_ids) if cfg.test_per_task is None else min(cfg.test_per_task, len(test_ids))
    test = make_splits(test_ids, test_labels, sizes=(n_test,), names=("test",), seed=cfg.seed)["test"]
    return {**first, "test": test}


def prepare_given(cfg: GivenSuite, log: Log = print) -> Prepared:
    """Load the base, every fine-tune (aligned with the base), heads and data splits."""
    from ...models import load_adapter

    fam = get_family(cfg.family)
    cache = os.path.join(cache_root(), "converted")
    base_source = local_or_hub(cfg.base, trust_pickle=cfg.trust_pickle, cache_dir=cache)
    spec = cfg.spec()
    spec = replace(spec, adapter_args={**spec.adapter_args, "source": base_source})
    for t in cfg.tasks:  # a missing local checkpoint fails before any model is loaded
        local_or_hub(t.finetuned, trust_pickle=cfg.trust_pickle, cache_dir=cache)
    log(f"base {cfg.base} ({fam.adapter}, {cfg.device}, {cfg.dtype})")
    adapter = load_adapter(spec.adapter, **{**spec.adapter_args, "device": cfg.device})
    base = adapter.state_dict()
    text = (
        ClipText(local_or_hub(cfg.text_model or cfg.base, trust_pickle=cfg.trust_pickle, cache_dir=cache), cfg.device)
        if fam.name == "clip"
        else None
    )
    tasks = {}
    for t in cfg.tasks:
        data = load_task(t.loader, **t.loader_args)
        splits = _splits(data, cfg)
        log(
            f"[{t.name}] {len(data)} items, {data.num_classes} classes; "
            f"train/val/test = {len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])}"
        )
        finetuned, extra = fam.load_finetuned(t.finetuned, base, trust_pickle=cfg.trust_pickle, cache_dir=cache)
        head = fam.make_head(t.name, data.label_names, extra, text)
        tasks[t.name] = task_state(adapter, base, t.name, data, splits, head, finetuned, cfg.batch_size)
        norm = sum(float(v.double().pow(2).sum()) for _, v in tasks[t.name].tau.items()) ** 0.5
        log(f"[{t.name}] fine-tune {t.finetuned}: {len(finetuned)} tensors, |tau| = {norm:.4g}")
    return Prepared(spec, adapter, base, tasks)


def manifest_recipe(cfg: GivenSuite) -> dict:
    """What ``manifest.json`` says about where the fine-tunes and heads came from."""
    heads = (
        "zero-shot: mean of L2-normalised template embeddings of the CLIP text tower, re-normalised, "
        "times the logit scale"
        if cfg.family == "clip"
        else "each fine-tune's own classifier (dense, tanh, out_proj on the <s> token), frozen"
    )
    return {
        "recipe": {
            "given": {
                "base": cfg.base,
                "text_model": cfg.text_model or (cfg.base if cfg.family == "clip" else None),
                "finetuned": {t.name: t.finetuned for t in cfg.tasks},
                "heads": heads,
                "family": cfg.family,
                "dtype": cfg.dtype,
                "splits": {
                    "train": cfg.train_per_task,
                    "val": cfg.val_per_task,
                    "test": cfg.test_per_task,
                    "val_from": "train part",
                },
            }
        },
        "eval_batch": cfg.batch_size,
    }


def build_given(cfg: GivenSuite, out_dir: str, log: Log = print, command: str = "") -> dict:
    """Build the suite into ``out_dir`` (which must not exist) and return its results.

    Everything is written into a temporary sibling folder first and renamed when complete.
    """
    from ..build import finish_build

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise CheckpointError(f"{out_dir} exists; remove it or choose another --out")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    started = time.time()
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", dir=parent)
    try:
        prep = prepare_given(cfg, log)
        heads_extra = {k: v for t, s in prep.tasks.items() for k, v in s.head.extra_tensors(t).items()}
        results = finish_build(
            prep, tmp, log, command, started=started, manifest_extra=manifest_recipe(cfg), heads_extra=heads_extra
        )
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return results
