"""Rewrite a built suite's switch packs in another layout, keeping its results.json byte counts true.

The packs' switches (masks, value codes, scales, codebooks) do not change, only their bytes
(:func:`tswitch.pack.repack`), so every accuracy in ``results.json`` stays as it is; every byte count
that is read off a stored pack moves by exactly that pack's change. Byte counts of packs the suite
does not store (the ``alpha_grid`` sweep, ``flex.reference_tswitch``) stay as the build wrote them,
in the layout named by ``results["storage"]["built_layout"]``.
"""

from __future__ import annotations

import glob
import json
import os

from ..pack import SwitchPack, repack
from ..report import pack_report
from .files import write_json
from .manifest import Manifest


def _pack_totals(path: str) -> dict:
    report = pack_report(SwitchPack(path))
    tasks = report["tasks"]
    by_encoding: dict[str, int] = {}
    for t in tasks:
        for enc, nb in t["bytes_by_encoding"].items():
            by_encoding[enc] = by_encoding.get(enc, 0) + nb
    return {
        "bytes": sum(t["bytes"] for t in tasks),
        "sass_bytes": sum(t["eq16_bytes"] for t in tasks),
        "bound_bytes": sum(t["bound_bytes"] for t in tasks),
        "bytes_by_encoding": dict(sorted(by_encoding.items())),
        "format_version": report["format_version"],
    }


def repack_suite(folder: str, layout: str = "auto") -> dict:
    """Repack every ``.tsw`` of the suite in ``folder`` and update ``results.json``; returns its new
    ``storage`` block ``{"layout", "built_layout", "packs": {stem: {"bytes", "sass_bytes", "bound_bytes",
    "bytes_by_encoding", "format_version", "bytes_before"}}}``. Running it twice changes nothing more."""
    manifest = Manifest.load(folder)
    results_path = os.path.join(folder, "results.json")
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    old = results.get("storage", {}).get("packs", {})
    packs, delta = {}, {}
    for path in sorted(glob.glob(os.path.join(folder, "*.tsw"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        before = sum(t.total_bytes for t in SwitchPack(path).header.tasks)
        repack(path, None, layout)
        packs[stem] = {**_pack_totals(path), "bytes_before": old.get(stem, {}).get("bytes_before", before)}
        delta[stem] = packs[stem]["bytes"] - before

    switches = os.path.splitext(manifest.pack)[0]
    methods = results["methods"]
    if methods["t-switch"]["extra_bytes"] + delta[switches] != packs[switches]["bytes"]:
        raise ValueError(f"{results_path}: t-switch bytes do not match {manifest.pack}; rebuild the suite")
    for name in ("t-switch", "auto-switch"):
        methods[name]["extra_bytes"] += delta[switches]
    flex = results.get("flex")
    if flex:
        for name in ("flexswitch", "auto-flexswitch"):
            if name in methods:
                methods[name]["extra_bytes"] += delta[flex["main"]]
        for stem, run in flex["runs"].items():
            run["bytes"] += delta.get(stem, 0)
        for row in flex.get("ablation", []):
            row["switch_bytes"] += delta[row["run"] or switches]
    results["storage"] = {
        "layout": layout,
        "built_layout": results.get("storage", {}).get("built_layout", "sass"),
        "packs": packs,
    }
    write_json(results_path, results)
    return results["storage"]


def storage_markdown(storage: dict) -> str:
    """The ``storage`` block of ``results.json`` as a Markdown table (README and app)."""
    lines = [
        f"Switch packs as stored (layout `{storage['layout']}`, per tensor the smallest; `tswitch inspect` "
        "shows each tensor), against SASS (journal Eq. 16) and the entropy bound (each tensor's mask at its "
        "own density); bytes include scales, codebooks and dense tensors:",
        "",
        "| pack | stored (B) | SASS, Eq. 16 (B) | saved vs SASS | bound (B) | stored / bound | encodings |",
        "|---|---|---|---|---|---|---|",
    ]
    for stem, p in storage["packs"].items():
        encodings = ", ".join(f"{enc} {nb:,}" for enc, nb in p["bytes_by_encoding"].items())
        lines.append(
            f"| `{stem}.tsw` | {p['bytes']:,} | {p['sass_bytes']:,} | {1 - p['bytes'] / max(1, p['sass_bytes']):.1%} "
            f"| {p['bound_bytes']:,} | {p['bytes'] / max(1, p['bound_bytes']):.3f} | {encodings} |"
        )
    return "\n".join(lines)
