"""Write a built suite's folder (``docs/SUITE.md``) atomically enough: every file via temp + rename."""

from __future__ import annotations

import base64
import io
import os
import shutil
from dataclasses import asdict

from .. import __version__
from ..io import save_state_dict
from ..routing import KNNRouter
from .files import write_json
from .manifest import MANIFEST_VERSION, Manifest

EXAMPLES_PER_TASK = 3
PREVIEW_CHARS = 280


def _thumb(image, size: int = 48) -> str:
    im = image.convert("RGB")
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_suite(prep, exps, choice: dict, results: dict, out_dir: str) -> None:
    """Write manifest, pack, heads, router, exemplars, splits, examples and results into ``out_dir``."""
    spec = prep.spec
    os.makedirs(os.path.join(out_dir, "examples"), exist_ok=True)
    tmp = os.path.join(out_dir, ".switches.tsw.part")
    shutil.copyfile(choice["pack"], tmp)
    os.replace(tmp, os.path.join(out_dir, "switches.tsw"))

    heads = {}
    for t, state in prep.tasks.items():
        heads[f"{t}.weight"], heads[f"{t}.bias"] = state.head.weight, state.head.bias
    save_state_dict(heads, os.path.join(out_dir, "heads.safetensors"))

    router = KNNRouter(
        exps.router.features, exps.router.task_ids, exps.router.task_names, k=choice["k"], metric=exps.router.metric
    )
    router.save(os.path.join(out_dir, "router.safetensors"))
    exemplars = []
    for t, state in prep.tasks.items():
        for j in exps.exemplar_index[t]:
            item = state.train_inputs[j]
            exemplars.append(
                {"task": t, "text": item[:PREVIEW_CHARS]}
                if isinstance(item, str)
                else {"task": t, "thumb": _thumb(item)}
            )
    write_json(os.path.join(out_dir, "exemplars.json"), exemplars)
    write_json(os.path.join(out_dir, "splits.json"), {t: s.splits for t, s in prep.tasks.items()})

    tasks = []
    for ts in spec.tasks:
        state = prep.tasks[ts.name]
        examples = []
        for i, item in enumerate(state.test_inputs[:EXAMPLES_PER_TASK]):
            if isinstance(item, str):
                examples.append(item[:1000])
            else:
                rel = os.path.join("examples", f"{ts.name}-{i}.png")
                item.convert("RGB").save(os.path.join(out_dir, rel))
                examples.append(rel)
        tasks.append(
            {
                "name": ts.name,
                "labels": list(state.label_names),
                "metric": "accuracy",
                "description": state.description,
                "normalize": state.head.normalize,
                "head": state.head_info,
                "loader": {"name": ts.loader, "args": ts.loader_args},
                "examples": examples,
                "split_sizes": {s: len(v) for s, v in state.splits.items()},
            }
        )
    adapter_args = dict(spec.adapter_args)
    manifest = {
        "name": spec.name,
        "format_version": MANIFEST_VERSION,
        "modality": spec.modality,
        "adapter": {"name": spec.adapter, "args": adapter_args},
        "tasks": tasks,
        "pack": "switches.tsw",
        "heads": "heads.safetensors",
        "alpha": choice["alpha"],
        "dense_pattern": choice["dense_pattern"],
        "router": {
            "file": "router.safetensors",
            "k": choice["k"],
            "metric": router.metric,
            "route_layers": adapter_args.get("route_layers"),
            "exemplars_per_task": spec.exemplars_per_task,
        },
        "recipe": {
            "head": {**asdict(spec.recipe.head), "frozen": True},
            **(
                {
                    "probe": {
                        "steps": spec.recipe.probe_steps,
                        "lr": spec.recipe.probe_lr,
                        "weight_decay": spec.recipe.probe_weight_decay,
                        "optimizer": "Adam, full batch",
                    }
                }
                if spec.recipe.head.kind == "linear-probe"
                else {}
            ),
            "finetune": {
                "steps": spec.recipe.steps,
                "batch_size": spec.recipe.batch_size,
                "lr": spec.recipe.lr,
                "weight_decay": spec.recipe.weight_decay,
                "optimizer": "AdamW",
                "train_bn": spec.recipe.train_bn,
                "dropout": spec.recipe.dropout,
                "head": f"frozen {spec.recipe.head.kind}",
                "seed": spec.recipe.seed,
                "select_every": spec.recipe.select_every,
            },
        },
        "eval_batch": spec.eval_batch,
        "split_seed": spec.split_seed,
        "smoke": spec.smoke,
        "tswitch_version": __version__,
        "exemplar_ids": {t: [s.splits["train"][j] for j in exps.exemplar_index[t]] for t, s in prep.tasks.items()},
    }
    finetunes = {t: s.finetune_file for t, s in prep.tasks.items() if s.finetune_file}
    if len(finetunes) == len(prep.tasks):  # builders that fine-tune here record where (FlexSwitch reads it)
        manifest["finetunes"] = finetunes
    Manifest.from_dict(manifest).save(out_dir)
    write_results(out_dir, results)


def write_results(out_dir: str, results: dict) -> None:
    """(Re)write only ``results.json``."""
    write_json(os.path.join(out_dir, "results.json"), results)
