"""A taught task as files the command line reads (the *Teach* tab's download).

:func:`export_zip` writes one ``<task>.zip`` holding

- ``<task>.tsw``: the switch, a one-task pack for the suite's base model (same base fingerprint:
  ``python -m tswitch inspect`` reads it, ``python -m tswitch add-task PACK --switches <task>.tsw``
  adds it to any pack of that base);
- ``<task>-exemplars.safetensors``: the router exemplars, a :class:`~tswitch.routing.KNNRouter`
  file (tensors ``features`` ``(N, D)`` float32 and ``task_ids`` ``(N,)`` int64, metadata
  ``tswitch_router`` = ``{"format": "tswitch-knn-router", "version", "task_names", "k", "metric"}``)
  holding only the new task's exemplars, whose texts are in ``<task>-exemplars.json``;
- ``suite/``: the suite with the task added the way ``add-task`` adds one (``switches.tsw`` rewritten
  with the new task, the head in ``heads.safetensors``, the router over every exemplar), so
  ``python -m tswitch route --suite suite --text ...`` routes among the suite's tasks and the new one;
- ``README.txt``: these commands.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile

import torch

README = """{name}: a task taught in the tswitch app on suite {suite}
labels: {labels}
held-back accuracy: pre-trained {pre:.1%}, individual {ind:.1%}, T-Switch {ts:.1%} ({n} lines)
switch: density {density:.2%}, {bytes:,} bytes ({fp32:,} bytes as a float32 task vector)

python -m tswitch inspect {name}.tsw
python -m tswitch route --suite suite --text "a sentence to route"
python -m tswitch add-task YOUR_PACK.tsw --switches {name}.tsw   # a pack of the same base model

{name}.tsw is a one-task switch pack for the suite's base model; suite/switches.tsw is the suite's
pack with it added (tswitch.pack.add_task). {name}-exemplars.safetensors holds the router
exemplars of the new task (tswitch.routing.KNNRouter.load reads it; texts in {name}-exemplars.json).
"""


def _floating(suite) -> dict[str, torch.Tensor]:
    return {k: v for k, v in suite.adapter.state_dict().items() if torch.is_floating_point(v)}


def write_switch(suite, task, path: str) -> None:
    """The task's switch as a one-task ``.tsw`` pack for the suite's base model."""
    from ..pack import create_pack

    create_pack(path, _floating(suite), [task.encoded])


def write_exemplars(suite, task, path: str) -> None:
    """The task's router exemplars as a one-task :class:`~tswitch.routing.KNNRouter` file."""
    from ..routing import KNNRouter

    n = task.exemplars.shape[0]
    ids = torch.zeros(n, dtype=torch.long)
    KNNRouter(task.exemplars, ids, [task.name], k=min(suite.router.k, n), metric=suite.router.metric).save(path)


def write_suite(suite, task, folder: str) -> None:
    """The suite's serving files (manifest, pack, heads, router, exemplars) with ``task`` added."""
    from safetensors.torch import load_file, save_file

    from ..pack import add_task
    from .serve import combined_router

    os.makedirs(folder, exist_ok=True)
    from .run import manifest_of

    manifest = manifest_of(suite)
    manifest.pop("flex", None)  # FlexSwitch's pack and router are not copied
    manifest["tasks"].append(
        {
            "name": task.name,
            "labels": list(task.labels),
            "metric": "accuracy",
            "normalize": task.head.normalize,
            # no data loader holds a visitor's lines: the task can be routed and served, not re-evaluated
            "loader": {"name": "taught-in-app", "args": {}},
            "description": f"taught in the tswitch app (templates: {', '.join(task.templates)})",
            "examples": [],
        }
    )
    manifest["router"] = {**manifest["router"], "file": "router.safetensors"}
    manifest["pack"], manifest["heads"] = "switches.tsw", "heads.safetensors"
    shutil.copyfile(suite.file(manifest_of(suite)["pack"]), os.path.join(folder, "switches.tsw"))
    add_task(os.path.join(folder, "switches.tsw"), _floating(suite), task.encoded)
    heads = load_file(suite.file(manifest_of(suite).get("heads") or "heads.safetensors"))
    heads[f"{task.name}.weight"], heads[f"{task.name}.bias"] = task.head.weight, task.head.bias
    save_file({k: v.contiguous() for k, v in heads.items()}, os.path.join(folder, "heads.safetensors"))
    combined_router(suite, [(task.name, task.exemplars)]).save(os.path.join(folder, "router.safetensors"))
    exemplars = list(suite.exemplars) + [{"task": task.name, "text": t} for t in task.exemplar_texts]
    for name, doc in (("exemplars.json", exemplars), ("manifest.json", manifest)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)


def export_zip(suite, task, folder: str) -> str:
    """Write ``<folder>/<task>.zip`` (see the module docstring); returns its path."""
    with tempfile.TemporaryDirectory(prefix="tswitch-export-") as work:
        write_switch(suite, task, os.path.join(work, f"{task.name}.tsw"))
        write_exemplars(suite, task, os.path.join(work, f"{task.name}-exemplars.safetensors"))
        with open(os.path.join(work, f"{task.name}-exemplars.json"), "w", encoding="utf-8") as f:
            json.dump(list(task.exemplar_texts), f, ensure_ascii=False, indent=0)
        write_suite(suite, task, os.path.join(work, "suite"))
        acc = task.accuracy
        readme = README.format(
            name=task.name,
            suite=suite.name,
            labels=", ".join(task.labels),
            pre=acc["pretrained"].value,
            ind=acc["individual"].value,
            ts=acc["t-switch"].value,
            n=acc["pretrained"].total,
            density=task.density,
            bytes=task.switch_bytes,
            fp32=task.float32_bytes,
        )
        with open(os.path.join(work, "README.txt"), "w", encoding="utf-8") as f:
            f.write(readme)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{task.name}.zip")
        with zipfile.ZipFile(path + ".part", "w", zipfile.ZIP_DEFLATED) as z:
            for root, _, files in os.walk(work):
                for file in sorted(files):
                    full = os.path.join(root, file)
                    z.write(full, os.path.relpath(full, work))
        os.replace(path + ".part", path)
    return path
