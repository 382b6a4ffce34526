"""A visitor's labelled lines: parsed, checked and split, each refusal one line long.

Two input forms: pasted text, one ``label<TAB>text`` per line, and a two-column CSV file
(``label,text``; a first row ``label,text`` is read as a header). Whole blank lines are skipped; a
text repeated under one label is kept once (so it cannot land on both sides of the split), a text
repeated under two labels is refused. The bundled examples are JSON files in ``examples/``, each
naming its source and licence.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass

import numpy as np

MIN_CLASSES = 2
MAX_CLASSES = 20  # the zero-shot head embeds every label; the page's charts stay readable
MIN_PER_CLASS = 5  # one line per class is held back, the rest (>= 4) are trained on
MAX_LINES = 2_000  # a fine-tune within the time cap sees a few hundred lines; more only costs parsing
MAX_TEXT_CHARS = 1_000  # the text backbone reads 64 tokens (~300 characters); beyond this is pasted by mistake
MAX_LABEL_CHARS = 48  # a label is a class name the zero-shot head turns into a prompt
MAX_FILE_BYTES = 4 << 20  # 2,000 lines of 1,000 characters are ~2 MB (more in non-Latin scripts)
HELD_BACK_FRACTION = 0.2  # the papers' val/test are ~20% of a task; at least one line per class
MAX_HELD_BACK = 200  # three forwards of the held-back lines must fit in ~15 s on 2 CPU cores
EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples")


class TeachError(ValueError):
    """Input a new task cannot be built from; the message is one line for the page."""


@dataclass(frozen=True)
class LabelledLines:
    """Checked lines: ``texts[i]`` has label ``labels[targets[i]]``; labels in order of first use."""

    labels: tuple[str, ...]
    texts: tuple[str, ...]
    targets: np.ndarray  # (N,) int64
    dropped_repeats: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        return {label: int((self.targets == i).sum()) for i, label in enumerate(self.labels)}

    def subset(self, index) -> LabelledLines:
        index = np.asarray(index, dtype=np.int64)
        return LabelledLines(self.labels, tuple(self.texts[i] for i in index), self.targets[index])


def _clip(value: str, n: int = 40) -> str:
    value = " ".join(value.split())
    return value if len(value) <= n else value[: n - 1] + "…"


def check_pairs(pairs: list[tuple[int, str, str]]) -> LabelledLines:
    """``(line number, label, text)`` rows -> :class:`LabelledLines`, or :class:`TeachError`."""
    if not pairs:
        raise TeachError("no labelled lines: paste lines as label<TAB>text, upload a CSV, or pick an example")
    if len(pairs) > MAX_LINES:
        raise TeachError(f"{len(pairs):,} lines; at most {MAX_LINES:,} are taken")
    labels: dict[str, int] = {}
    label_of: dict[str, str] = {}
    texts, targets = [], []
    repeats = 0
    for number, label, text in pairs:
        label, text = label.strip(), " ".join(text.split())
        if not label:
            raise TeachError(f"line {number} has an empty label")
        if not text:
            raise TeachError(f"line {number} has an empty text")
        if len(label) > MAX_LABEL_CHARS:
            raise TeachError(f"line {number}: the label is longer than {MAX_LABEL_CHARS} characters")
        if len(text) > MAX_TEXT_CHARS:
            raise TeachError(f"line {number} is longer than {MAX_TEXT_CHARS:,} characters")
        if text in label_of:
            if label_of[text] != label:
                raise TeachError(f"line {number}: {_clip(text)!r} is labelled both {label_of[text]!r} and {label!r}")
            repeats += 1
            continue
        label_of[text] = label
        texts.append(text)
        targets.append(labels.setdefault(label, len(labels)))
    if len(labels) < MIN_CLASSES:
        raise TeachError(f"only one class ({next(iter(labels))!r}); a task needs at least {MIN_CLASSES}")
    if len(labels) > MAX_CLASSES:
        raise TeachError(f"{len(labels)} classes; at most {MAX_CLASSES} are taken")
    out = LabelledLines(tuple(labels), tuple(texts), np.asarray(targets, dtype=np.int64), repeats)
    short = {label: n for label, n in out.counts().items() if n < MIN_PER_CLASS}
    if short:
        label, n = next(iter(short.items()))
        more = f" (and {len(short) - 1} more)" if len(short) > 1 else ""
        raise TeachError(f"class {label!r} has {n} distinct example(s){more}; each class needs {MIN_PER_CLASS}")
    return out


def parse_lines(value: str) -> LabelledLines:
    """Pasted ``label<TAB>text`` lines (blank lines skipped)."""
    if not isinstance(value, str):
        raise TeachError("the labelled lines must be text")
    rows = []
    for number, line in enumerate(value.splitlines(), 1):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab:
            raise TeachError(f"line {number} has no TAB: write label<TAB>text")
        rows.append((number, label, text))
        if len(rows) > MAX_LINES:
            break  # check_pairs reports the count; parsing more would only cost time
    return check_pairs(rows)


def parse_csv(data: bytes) -> LabelledLines:
    """A two-column CSV file (``label,text``), UTF-8 (a byte-order mark is allowed)."""
    if len(data) > MAX_FILE_BYTES:
        raise TeachError(f"the file is larger than {MAX_FILE_BYTES >> 20} MB")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TeachError(f"the file is not UTF-8 text (byte {exc.start})") from None
    if "\0" in content:
        raise TeachError("the file is not UTF-8 text (it holds NUL bytes)")
    rows = []
    try:
        for number, row in enumerate(csv.reader(io.StringIO(content, newline="")), 1):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise TeachError(f"row {number} has {len(row)} columns; the CSV needs two: label,text")
            if number == 1 and [c.strip().lower() for c in row] == ["label", "text"]:
                continue
            rows.append((number, row[0], row[1]))
            if len(rows) > MAX_LINES:
                break
    except csv.Error as exc:
        raise TeachError(f"not a readable CSV file ({exc})") from None
    return check_pairs(rows)


def read_upload(path: str) -> LabelledLines:
    """The CSV file at ``path`` (an upload), refused when too large before it is read."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise TeachError(f"the file is larger than {MAX_FILE_BYTES >> 20} MB")
        with open(path, "rb") as f:
            return parse_csv(f.read())
    except OSError as exc:
        raise TeachError(f"the file could not be read ({type(exc).__name__})") from None


def split_held_back(
    data: LabelledLines, fraction: float = HELD_BACK_FRACTION, most: int = MAX_HELD_BACK, seed: int = 0
) -> tuple[LabelledLines, LabelledLines]:
    """``(train, held back)``: per class ``round(fraction * n)`` lines (at least one, at most ``n - 4``)
    held back, drawn with ``seed``; the whole held-back part capped at ``most`` lines, classes in turn."""
    rng = np.random.default_rng(seed)
    per_class = []
    for c in range(len(data.labels)):
        where = rng.permutation(np.flatnonzero(data.targets == c))
        n = where.size
        take = min(max(1, round(fraction * n)), n - (MIN_PER_CLASS - 1))
        per_class.append(list(where[:take]))
    held: list[int] = []
    while len(held) < most and any(per_class):  # round-robin keeps every class in a capped split
        for rows in per_class:
            if rows and len(held) < most:
                held.append(int(rows.pop(0)))
    held_set = set(held)
    train = [i for i in range(len(data)) if i not in held_set]
    return data.subset(train), data.subset(sorted(held))


# -- bundled examples ----------------------------------------------------------------------------
def example_names() -> list[str]:
    """Names of the bundled example tasks (files ``examples/<name>.json``)."""
    if not os.path.isdir(EXAMPLES_DIR):
        return []
    return sorted(f[: -len(".json")] for f in os.listdir(EXAMPLES_DIR) if f.endswith(".json"))


def load_example(name: str) -> dict:
    """A bundled example: ``{"name", "description", "source", "license", "rows": [[label, text], ...]}``."""
    if name not in example_names():
        raise TeachError(f"unknown example {name!r}; available: {', '.join(example_names()) or '(none)'}")
    with open(os.path.join(EXAMPLES_DIR, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def example_lines(name: str) -> str:
    """A bundled example as the ``label<TAB>text`` lines a visitor would paste."""
    return "\n".join(f"{label}\t{text}" for label, text in load_example(name)["rows"])


NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def check_name(name, taken=()) -> str:
    """A task name: 1-32 of ``a-z 0-9 _ -`` (a file name on every system), not one of ``taken``."""
    name = name.strip().lower() if isinstance(name, str) else ""
    if not NAME_RE.fullmatch(name):
        raise TeachError("the task name must be 1-32 characters of a-z, 0-9, - and _, starting with a letter or digit")
    if name in taken:
        raise TeachError(f"the suite already has a task called {name!r}: pick another name")
    return name
