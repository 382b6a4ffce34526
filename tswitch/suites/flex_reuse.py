"""Reusing a FlexSwitch run's evaluations across collects (docs/SUITE.md, "FlexSwitch in a suite").

An evaluation of a run reads the run's pack and the suite's heads, splits, task loaders and
routers. :func:`evaluation_inputs` hashes them; a collect stores the digests beside each run's
numbers (``entry["inputs"]``), and the next collect on the same split takes a number from
:func:`previous_block` when :func:`reusable` finds every file it read unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os

from ..io import file_sha256
from .files import FLEX_ROUTER_FILE, FLEX_VAL_FILE

# the files each evaluation reads, beyond the code (an evaluation is reused when all of them match)
EVAL_INPUTS = {
    "flexswitch": ("pack", "heads", "splits", "tasks"),
    "knn": ("pack", "heads", "splits", "tasks", "router"),
    "low_rank": ("pack", "heads", "splits", "tasks", "router_flex"),
}


def _file_digest(path: str) -> str | None:
    return "sha256:" + file_sha256(path) if os.path.isfile(path) else None


def suite_inputs(suite) -> dict[str, str | None]:
    """SHA-256 of what every run's evaluations read from the suite: its heads, splits, k-NN router
    and low-rank router files, and the manifest's task loaders and evaluation batch (the manifest
    file itself changes when a collect names the served run, so it is not hashed whole)."""
    tasks = json.dumps(
        {"tasks": [[t.name, t.loader] for t in suite.manifest.tasks], "eval_batch": suite.manifest.eval_batch},
        sort_keys=True,
    )
    return {
        "heads": _file_digest(suite.file("heads.safetensors")),
        "splits": _file_digest(suite.file("splits.json")),
        "tasks": "sha256:" + hashlib.sha256(tasks.encode()).hexdigest(),
        "router": _file_digest(suite.file(suite.manifest.router.file)),
        "router_flex": _file_digest(suite.file(FLEX_ROUTER_FILE)),
    }


def evaluation_inputs(suite, stem: str, shared: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """:func:`suite_inputs` (``shared``, computed when not given) and run ``stem``'s pack."""
    return {**(suite_inputs(suite) if shared is None else shared), "pack": _file_digest(suite.file(f"{stem}.tsw"))}


def previous_block(suite, split: str) -> dict | None:
    """The ``flex`` block an earlier collect wrote on ``split``: ``results.json``'s for test,
    ``FLEX_VAL_FILE``'s for validation (``None`` when there is none or it is unreadable)."""
    try:
        if split == "val":
            with open(suite.file(FLEX_VAL_FILE), encoding="utf-8") as f:
                block = json.load(f).get("flex")
        else:
            block = suite.results().get("flex")
    except (OSError, ValueError, AttributeError):
        return None
    return block if isinstance(block, dict) and block.get("split") == split else None


def reusable(previous: dict | None, stem: str, inputs: dict, limit: int | None) -> dict:
    """The evaluations of ``stem`` in ``previous`` (a ``flex`` block on the same split) whose
    recorded inputs (``entry["inputs"]``) all equal ``inputs``: ``{"flexswitch": ..., "knn": ...}``.
    Only full-split evaluations are reused (``limit`` None on both sides)."""
    if not previous or limit is not None or previous.get("limit") is not None:
        return {}
    entry = (previous.get("runs") or {}).get(stem) or {}
    recorded = entry.get("inputs") or {}
    out = {}
    for key, needs in EVAL_INPUTS.items():
        if key in entry and all(inputs.get(n) is not None and recorded.get(n) == inputs[n] for n in needs):
            out[key] = entry[key]
    return out


def recorded_inputs(inputs: dict, evaluated: dict) -> dict:
    """The digests of ``inputs`` that the evaluations present in ``evaluated`` read (stored as the
    run's ``inputs``)."""
    used = [k for k in EVAL_INPUTS if k in evaluated]
    return {n: inputs[n] for n in sorted({n for k in used for n in EVAL_INPUTS[k]})}
