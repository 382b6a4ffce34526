"""Loaders for data the user has on disk: image folders, ``datasets`` saved with ``save_to_disk``,
and CSV/TSV tables (GLUE's own files).

Each loader returns the *train* and the *test* part of one task as a single :class:`TaskData` whose
ids start with the part's name (``"train/..."``, ``"test/..."``); :func:`part_ids` separates them, so
a real-checkpoint suite takes its exemplars and validation split from the train part and reports
on the test part. Images are opened only when an item is used (:class:`LazyImages`): SUN397 has
100,000 of them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import TaskData, register_loader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
# GLUE's text columns, in the order a pair is joined (the datasets names and the original TSVs').
TEXT_COLUMNS = (
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("sentence",),
    ("text",),
)
PAIR_SEPARATOR = "</s></s>"  # RoBERTa's pair separator; the tokenizer reads it as special tokens


class DataError(ValueError):
    """A data folder is missing, empty or not in a layout these loaders read."""


class LazyImages(Sequence):
    """Images opened (and converted to RGB) on access: indexable and sized, holding only paths."""

    def __init__(self, opener, count: int):
        self._open, self._count = opener, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        return self._open(index % self._count)


def part_ids(data: TaskData, part: str) -> tuple[list[str], np.ndarray]:
    """The ids and labels of one part (``"train"`` or ``"test"``) of a loader's task."""
    keep = [i for i, item in enumerate(data.ids) if item.startswith(f"{part}/")]
    return [data.ids[i] for i in keep], data.labels[keep]


# -- image folders -------------------------------------------------------------------------------
def _class_folders(root: str) -> list[str]:
    if not os.path.isdir(root):
        raise DataError(f"no such data folder: {root}")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataError(f"{root}: no class subfolders")
    if all(c.isdigit() for c in classes):
        classes = sorted(classes, key=int)  # "0".."42": numeric label order, not "0", "1", "10", ...
    return classes


@register_loader("image-folder")
def load_image_folder(root: str, train: str = "train", test: str = "test") -> TaskData:
    """``root/<train>/<class>/*.png`` and ``root/<test>/<class>/*.png`` (torchvision ImageFolder).

    Classes are the train part's subfolders, sorted (numerically when all are integers); their
    names are the folder names with ``_`` read as a space. The test part must use the same classes.
    """
    from PIL import Image

    classes = _class_folders(os.path.join(root, train))
    test_classes = _class_folders(os.path.join(root, test))
    if set(test_classes) - set(classes):
        raise DataError(f"{root}: test classes {sorted(set(test_classes) - set(classes))[:3]} are not train classes")
    paths, labels, ids = [], [], []
    for part in (train, test):
        tag = "train" if part == train else "test"
        for label, name in enumerate(classes):
            folder = os.path.join(root, part, name)
            if not os.path.isdir(folder):
                continue
            for file in sorted(os.listdir(folder)):
                if file.lower().endswith(IMAGE_SUFFIXES):
                    paths.append(os.path.join(folder, file))
                    labels.append(label)
                    ids.append(f"{tag}/{name}/{file}")
    if not paths:
        raise DataError(f"{root}: no images under {train}/ and {test}/")
    images = LazyImages(lambda i: Image.open(paths[i]).convert("RGB"), len(paths))
    return TaskData(
        images,
        np.asarray(labels),
        tuple(c.replace("_", " ") for c in classes),
        ids,
        description=f"Images from {os.path.basename(os.path.normpath(root))}.",
        source=f"image folder {root}",
    )


# -- datasets saved with save_to_disk ------------------------------------------------------------
def _require_datasets():
    try:
        import datasets
    except ImportError:
        raise DataError(
            "reading a saved Hugging Face dataset needs the datasets package: pip install datasets"
        ) from None
    return datasets


def _pick(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"no {what} column {wanted!r}; columns: {', '.join(columns)}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise DataError(f"no {what} column among {', '.join(columns)} (give it explicitly)")


def _text_columns(columns: Sequence[str], wanted: Sequence[str] | None) -> tuple[str, ...]:
    if wanted:
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise DataError(f"no text column {missing[0]!r}; columns: {', '.join(columns)}")
        return tuple(wanted)
    for group in TEXT_COLUMNS:
        if all(c in columns for c in group):
            return group
    raise DataError(f"no text column among {', '.join(columns)} (give text_columns)")


def _join(row: dict, columns: Sequence[str]) -> str:
    return PAIR_SEPARATOR.join(str(row[c]) for c in columns)


@register_loader("hf-disk")
def load_hf_disk(
    path: str,
    train: str = "train",
    test: str = "test",
    input_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
) -> TaskData:
    """A ``datasets.DatasetDict`` saved with ``save_to_disk``: its ``train`` and ``test`` splits.

    Image datasets: the ``image``/``img`` column (or ``input_column``). Text datasets (GLUE): the
    text columns, a pair joined by ``</s></s>``. Label names: ``label_names``, else the label
    column's ``ClassLabel`` names, else ``"0"``, ``"1"``, ... Rows with a negative label (GLUE's
    unlabelled test rows) are refused: use the validation split as ``test``.
    """
    datasets = _require_datasets()
    if not os.path.isdir(path):
        raise DataError(f"no such dataset folder: {path}")
    try:
        saved = datasets.load_from_disk(path)
    except Exception as exc:  # datasets raises FileNotFoundError or its own errors
        raise DataError(f"{path}: not a dataset saved with save_to_disk ({str(exc).splitlines()[0]})") from None
    for part in (train, test):
        if part not in saved:
            raise DataError(f"{path}: no split {part!r}; splits: {', '.join(saved)}")
    columns = list(saved[train].column_names)
    label = _pick(columns, label_column, (), "label")
    feature = saved[train].features[label]
    image_column = None if text_columns else (input_column or next((c for c in ("image", "img") if c in columns), None))
    texts = None if image_column else _text_columns(columns, text_columns or ([input_column] if input_column else None))
    names = tuple(label_names) if label_names else tuple(getattr(feature, "names", None) or ())
    inputs, label_parts, ids = [], [], []
    openers = []
    for part in (train, test):
        tag = "train" if part == train else "test"
        split = saved[part]
        part_labels = np.asarray(split[label], dtype=np.int64)
        if (part_labels < 0).any():
            raise DataError(f"{path}: split {part!r} has unlabelled rows (label -1); use a labelled split")
        label_parts.append(part_labels)
        ids += [f"{tag}/{i}" for i in range(len(split))]
        if image_column:
            column = split.select_columns([image_column])
            openers += [(column, i) for i in range(len(split))]
        else:
            if texts is None:  # no image column means text columns were found
                raise DataError("neither an image column nor text columns")
            inputs += [_join(row, texts) for row in split.select_columns(list(texts))]
    labels = np.concatenate(label_parts)
    if not names:
        names = tuple(str(i) for i in range(int(labels.max()) + 1))
    items: Sequence[Any] = inputs
    if image_column:
        items = LazyImages(lambda i: openers[i][0][openers[i][1]][image_column].convert("RGB"), len(openers))
    return TaskData(
        items,
        labels,
        names,
        ids,
        description=f"{os.path.basename(os.path.normpath(path))}.",
        source=f"datasets save_to_disk {path}",
    )


# -- CSV / TSV tables ------------------------------------------------------------------------------
def _table(root: str, part: str) -> list[dict[str, Any]]:
    for suffix, delimiter in ((".tsv", "\t"), (".csv", ",")):
        file = os.path.join(root, part + suffix)
        if os.path.isfile(file):
            with open(file, encoding="utf-8", newline="") as f:
                # GLUE's TSVs hold unescaped quotes: read them literally
                return list(
                    csv.DictReader(
                        f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
                    )
                )
    raise DataError(f"{root}: no {part}.tsv or {part}.csv")


@register_loader("text-table")
def load_text_table(
    root: str,
    train: str = "train",
    test: str = "dev",
    text_columns: Sequence[str] | None = None,
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
) -> TaskData:
    """``root/train.tsv`` (or ``.csv``) and ``root/dev.tsv``: GLUE's own files, or any such table.

    Labels are integers (then ``label_names`` name them, default ``"0"``, ``"1"``, ...) or strings
    (then classes are the sorted distinct strings, unless ``label_names`` fixes their order).
    """
    rows = {tag: _table(root, part) for tag, part in (("train", train), ("test", test))}
    if not rows["train"]:
        raise DataError(f"{root}: {train} table is empty")
    columns = list(rows["train"][0])
    texts = _text_columns(columns, text_columns)
    _pick(columns, label_column, (), "label")
    raw = [r[label_column] for tag in ("train", "test") for r in rows[tag]]
    if label_names:
        names = tuple(label_names)
        lookup = {n: i for i, n in enumerate(names)}
        labels = [int(v) if v.strip().lstrip("-").isdigit() else lookup.get(v, -1) for v in raw]
    elif all(v.strip().lstrip("-").isdigit() for v in raw):
        labels = [int(v) for v in raw]
        names = tuple(str(i) for i in range(max(labels) + 1))
    else:
        names = tuple(sorted(set(raw)))
        labels = [names.index(v) for v in raw]
    if min(labels) < 0:
        raise DataError(f"{root}: unknown or missing labels (use a labelled split as test)")
    inputs = [_join(r, texts) for tag in ("train", "test") for r in rows[tag]]
    ids = [f"{tag}/{i}" for tag in ("train", "test") for i in range(len(rows[tag]))]
    return TaskData(
        inputs,
        np.asarray(labels),
        names,
        ids,
        description=f"{os.path.basename(os.path.normpath(root))}.",
        source=f"table {root}",
    )
