"""Storage reports of a switch pack: what ``python -m tswitch inspect`` prints.

Bits per parameter count every byte a task adds (payloads + float32 scales, + codebooks for
quantised tasks) over the number of parameters the pack covers. Beside the stored bytes, each
task shows what its switch tensors would take as SASS (journal Eq. 16 with the measured ``nnz``,
rounded up to bytes) and the i.i.d. entropy bound ``n H(d) + nnz b`` (:func:`entropy_bits`),
both with the same side information (scales, codebooks, dense tensors) as the stored bytes.
"""

from __future__ import annotations

import math
import os
from collections import Counter

from .codec.layouts import entropy_bits
from .codec.sass import sass_nbytes
from .pack import DENSE, SwitchPack


def pack_report(pack: SwitchPack) -> dict:
    """A JSON-ready description of a pack (header only: no payload is read)."""
    h = pack.header
    n = h.num_params
    tasks, tensors = [], []
    for t in h.tasks:
        by_layout: Counter[str] = Counter()
        eq16 = bound = side = t.total_bytes - sum(t.nbytes)  # scales (+ codebooks)
        for j, spec in enumerate(h.tensors):
            by_layout[t.encodings[j]] += t.nbytes[j]
            if t.encodings[j] == DENSE:
                eq16 += t.nbytes[j]
                bound += t.nbytes[j]
            else:
                eq16 += sass_nbytes(spec.numel, t.nnz[j], t.widths[j])
                bound += math.ceil(entropy_bits(spec.numel, t.nnz[j], t.widths[j]) / 8)
        tasks.append(
            {
                "name": t.name,
                "alpha": t.alpha,
                "density": t.density,
                "layout": t.layout,
                "bytes": t.total_bytes,
                "bits_per_param": 8 * t.total_bytes / n if n else 0.0,
                "eq16_bytes": eq16,
                "bound_bytes": bound,
                "side_bytes": side,
                "bytes_by_encoding": dict(sorted(by_layout.items())),
                "dense_tensors": sum(e == DENSE for e in t.encodings),
                "labels": list(t.labels) if t.labels is not None else None,
            }
        )
    for j, spec in enumerate(h.tensors):
        per_task = []
        for t in h.tasks:
            row = {"task": t.name, "encoding": t.encodings[j], "nnz": t.nnz[j], "bytes": t.nbytes[j]}
            if t.encodings[j] != DENSE:  # Eq. 16 with the tensor's own width b (FlexSwitch: learned)
                bits = t.widths[j]
                row["eq16_bytes"] = sass_nbytes(spec.numel, t.nnz[j], bits)
                row["bound_bytes"] = math.ceil(entropy_bits(spec.numel, t.nnz[j], bits) / 8)
                if t.tensor_bits is not None:
                    row["bits"] = bits
            per_task.append(row)
        tensors.append(
            {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype, "numel": spec.numel, "tasks": per_task}
        )
    return {
        "path": pack.path,
        "format_version": h.format_version,
        "writer": h.writer,
        "base_fingerprint": h.base_fingerprint,
        "num_params": n,
        "num_tensors": len(h.tensors),
        "total_bytes": sum(t["bytes"] for t in tasks),
        "file_bytes": os.path.getsize(pack.path),
        "float32_bytes_per_task": 4 * n,
        "tasks": tasks,
        "tensors": tensors,
    }


def format_report(report: dict, tensors: bool = False) -> str:
    """Human-readable table of :func:`pack_report`."""
    lines = [
        f"{report['path']}: format v{report['format_version']}, {report['num_params']:,} params in "
        f"{report['num_tensors']} tensors, {len(report['tasks'])} task(s), "
        f"written by {report['writer'] or 'an unknown writer'}",
        f"base {report['base_fingerprint'][:23]}…  file {report['file_bytes']:,} B  "
        f"switches {report['total_bytes']:,} B (a float32 task vector: {report['float32_bytes_per_task']:,} B)",
        "",
        f"{'task':<24}{'alpha':>7}{'density':>9}{'layout':>8}{'bytes':>14}{'bits/param':>12}{'% of fp32':>10}"
        f"{'Eq.16 B':>14}{'bound B':>14}{'/bound':>8}",
    ]
    fp32 = report["float32_bytes_per_task"] or 1
    for t in report["tasks"]:
        lines.append(
            f"{t['name']:<24}{t['alpha']:>7.3f}{t['density']:>9.4f}{t['layout']:>8}"
            f"{t['bytes']:>14,}{t['bits_per_param']:>12.4f}{100 * t['bytes'] / fp32:>9.2f}%"
            f"{t['eq16_bytes']:>14,}{t['bound_bytes']:>14,}{t['bytes'] / max(1, t['bound_bytes']):>8.3f}"
        )
    lines += ["", "bytes per encoding (payloads only):"]
    for t in report["tasks"]:
        cells = ", ".join(f"{enc} {nb:,} B" for enc, nb in t["bytes_by_encoding"].items())
        lines.append(f"  {t['name']:<22}{cells}")
    if tensors:
        lines += ["", f"{'tensor':<48}{'shape':>18}  per task: encoding nnz bytes (Eq.16 bytes, bound bytes)"]
        for s in report["tensors"]:
            cells = "  ".join(
                f"{r['encoding']} {r['nnz']} {r['bytes']}"
                + (f" ({r['eq16_bytes']}, {r['bound_bytes']})" if "eq16_bytes" in r else "")
                for r in s["tasks"]
            )
            lines.append(f"{s['name']:<48}{str(tuple(s['shape'])):>18}  {cells}")
    return "\n".join(lines)
