"""The command line of ``demos/build_clip_suite.py`` and ``demos/build_glue_suite.py``.

Every user error is one line on stderr and exit status 2; the suite folder appears only when the
build completed (:func:`tswitch.suites.checkpoints.build_given`).
"""

from __future__ import annotations

import argparse
import os
import sys

from ...assets import ENV_VAR as ASSETS_ENV
from ...assets import assets_dir
from .build import GivenSuite, GivenTask
from .families import CLIP_MODELS, CLIP_TASKS


class UsageError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, like every other user error
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"{what} must be TASK=PATH, got {item!r}")
        out[name] = value
    return out


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return name


def parser(family: str) -> argparse.ArgumentParser:
    clip = family == "clip"
    p = _Parser(
        description="Build a tswitch suite from a base checkpoint and per-task fine-tunes "
        f"({'CLIP vision towers, zero-shot heads' if clip else 'RoBERTa on GLUE, fine-tuned heads'})."
    )
    if clip:
        p.add_argument(
            "--model",
            default="ViT-B-32",
            choices=sorted(CLIP_MODELS),
            help="sets the default --base and the FusionBench fine-tunes tanganke/clip-vit-*_<task>",
        )
        p.add_argument("--tasks", nargs="+", default=list(CLIP_TASKS))
        p.add_argument(
            "--text-model",
            default=None,
            help="CLIP checkpoint whose text tower builds the zero-shot heads (default: --base)",
        )
    else:
        p.add_argument("--tasks", nargs="+", required=True, help="e.g. cola sst2 mrpc qqp mnli qnli rte")
    p.add_argument(
        "--base",
        default=None,
        help="Hub id or Hugging Face folder"
        + (" (default: the --model's OpenAI CLIP)" if clip else " (e.g. roberta-base)"),
    )
    p.add_argument(
        "--finetuned",
        nargs="*",
        metavar="TASK=PATH",
        help="a fine-tune per task: Hub id, Hugging Face folder, .safetensors or pickle"
        + (" (default: FusionBench's)" if clip else ""),
    )
    p.add_argument(
        "--data",
        nargs="+",
        metavar="TASK=PATH",
        required=True,
        help="per task: an image folder (train/<class>/..., test/<class>/...) or a datasets folder (save_to_disk)"
        if clip
        else "per task: a datasets folder (save_to_disk) or a folder with train.tsv and dev.tsv",
    )
    p.add_argument(
        "--test-split", default=None, help="test part's name (default: test for images, validation / dev for GLUE)"
    )
    p.add_argument("--name", default=None, help="suite name (default: clip-<model> / roberta-glue)")
    p.add_argument("--out", default=None, help="suite folder (default: assets/<name>); must not exist")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="compute precision of every forward (weights and merges stay float32)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-per-task", type=int, default=1000, help="exemplar pool, from the train part")
    p.add_argument("--val-per-task", type=int, default=500, help="validation, from the train part")
    p.add_argument("--test-per-task", type=int, default=2000, help="0: the whole test part")
    p.add_argument("--exemplars", type=int, default=100, help="Auto-Switch exemplars per task (N)")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow pickled checkpoints (.pt/.bin); read without running code, converted once to "
        "safetensors in the cache",
    )
    p.add_argument("--quick", action="store_true", help="small hyper-parameter grids (smoke runs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def _loader(path: str, test_split: str | None, clip: bool) -> tuple[str, dict]:
    if not os.path.isdir(path):
        raise UsageError(f"data folder not found: {path}")
    path = os.path.abspath(path)
    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
        return "hf-disk", {"path": path, "test": test_split or ("test" if clip else "validation")}
    if clip:
        return "image-folder", {"root": path, "test": test_split or "test"}
    return "text-table", {"root": path, "test": test_split or "dev"}


def config(args, family: str) -> tuple[GivenSuite, str]:
    clip = family == "clip"
    finetuned = _pairs(args.finetuned, "--finetuned")
    data = _pairs(args.data, "--data")
    unknown = sorted((set(finetuned) | set(data)) - set(args.tasks))
    if unknown:
        raise UsageError(f"--finetuned/--data name tasks not in --tasks: {', '.join(unknown)}")
    if clip:
        base_default, pattern = CLIP_MODELS[args.model]
        base = args.base or base_default
        finetuned = {t: finetuned.get(t, pattern.format(task=t)) for t in args.tasks}
    else:
        base = args.base or "roberta-base"
        missing = [t for t in args.tasks if t not in finetuned]
        if missing:
            raise UsageError(f"--finetuned needs TASK=PATH for {', '.join(missing)}")
    missing = [t for t in args.tasks if t not in data]
    if missing:
        raise UsageError(f"--data needs TASK=PATH for {', '.join(missing)}")
    for value, what in [(base, "--base"), *((v, "--finetuned") for v in finetuned.values())]:
        if value.startswith((".", "/", "~")) and not os.path.exists(os.path.expanduser(value)):
            raise UsageError(f"{what}: checkpoint not found: {value}")
    tasks = tuple(GivenTask(t, finetuned[t], *_loader(data[t], args.test_split, clip)) for t in args.tasks)
    name = args.name or (f"clip-{args.model.lower()}" if clip else "roberta-glue")
    out = args.out
    if not out:
        assets = assets_dir()
        if assets is None:
            raise UsageError(f"give --out: no assets/ folder to write {name} into (or set ${ASSETS_ENV})")
        out = os.path.join(assets, name)
    cfg = GivenSuite(
        name=name,
        family=family,
        base=base,
        tasks=tasks,
        text_model=getattr(args, "text_model", None),
        device=_device(args.device),
        dtype=args.dtype,
        batch_size=args.batch_size,
        train_per_task=args.train_per_task,
        val_per_task=args.val_per_task,
        test_per_task=args.test_per_task or None,
        exemplars_per_task=args.exemplars,
        trust_pickle=args.trust_pickle,
        quick=args.quick,
    )
    return cfg, out


def main(family: str, argv: list[str] | None = None) -> int:
    import logging
    import warnings

    from ...io import WeightsError
    from ..data.external import DataError
    from .build import build_given
    from .families import CheckpointError

    args = parser(family).parse_args(argv)
    prog = os.path.basename(sys.argv[0]) if argv is None else f"build_{family}_suite"
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        cfg, out = config(args, family)
        # transformers' own warnings and progress bars are not this tool's output
        logging.getLogger("transformers").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="transformers")
        command = "python demos/build_{}_suite.py {}".format(
            "clip" if family == "clip" else "glue", " ".join(sys.argv[1:] if argv is None else argv)
        )
        results = build_given(cfg, out, log=lambda m: print(m, file=sys.stderr), command=command)
    except (UsageError, CheckpointError, WeightsError, DataError, ValueError, ImportError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    methods = results["methods"]
    for method in ("pretrained", "individual", "task_arithmetic", "ties", "t-switch", "auto-switch"):
        print(f"{method:16s} {100 * methods[method]['average']:.1f}")
    print(f"suite written to {out}")
    return 0
