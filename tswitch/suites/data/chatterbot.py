"""Two text tasks from chatterbot-corpus's YAML dialogues: English topic and language identification.

Every utterance of every conversation is an item (prompts and replies alike). An utterance is kept
if it has a letter in it (drops "1963", "," and the like), and only where it is unambiguous: a
string that occurs under two categories (or two languages) is dropped from that task, and each
task lists each string once.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import yaml

from .base import TaskData, register_loader
from .locate import package_file
from .splits import subsample_balanced

_SOURCE = "chatterbot-corpus: chatterbot_corpus/data/<language>/<category>.yml"


@functools.lru_cache(maxsize=1)
def _utterances() -> tuple[tuple[str, str, str], ...]:
    """(language, category, utterance) for every usable utterance, files in sorted order."""
    root = package_file("chatterbot_corpus", "data", install="chatterbot-corpus")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = []
    for path in sorted(root.glob("*/*.yml")):
        with open(path, encoding="utf-8") as handle:
            doc = yaml.load(handle, Loader=loader) or {}
        for conversation in doc.get("conversations") or []:
            for utterance in conversation:
                if not isinstance(utterance, str):
                    continue
                text = utterance.strip()
                if any(ch.isalpha() for ch in text):
                    out.append((path.parent.name, path.stem, text))
    return tuple(out)


def _unambiguous(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """{class: [texts]} from (class, text) pairs, each text once, texts of two classes dropped."""
    classes_of: dict[str, set[str]] = {}
    for name, text in pairs:
        classes_of.setdefault(text, set()).add(name)
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for name, text in pairs:
        if len(classes_of[text]) == 1 and text not in seen:
            seen.add(text)
            out.setdefault(name, []).append(text)
    return out


def _text_id(prefix: str, text: str) -> str:
    # a content hash: stable when the corpus adds or reorders conversations
    return f"{prefix}/{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


def _task(
    by_class: dict[str, list[str]], min_per_class: int, max_per_class: int | None, seed: int, description: str
) -> TaskData:
    names = tuple(sorted(c for c, texts in by_class.items() if len(texts) >= min_per_class))
    if len(names) < 2:
        raise ValueError(f"fewer than two classes have {min_per_class} utterances; lower min_per_class")
    inputs, label_list, ids = [], [], []
    for label, name in enumerate(names):
        texts = by_class[name]
        inputs += texts
        label_list += [label] * len(texts)
        ids += [_text_id(name, t) for t in texts]
    labels = np.asarray(label_list, dtype=np.int64)
    if max_per_class is not None:
        keep = set(subsample_balanced(ids, labels, max_per_class, seed=seed))
        index = [k for k, item in enumerate(ids) if item in keep]
        inputs, labels, ids = [inputs[k] for k in index], labels[index], [ids[k] for k in index]
    return TaskData(inputs, labels, names, ids, description=description, source=_SOURCE)


@register_loader("chatterbot-topic")
def load_chatterbot_topic(min_per_class: int = 40, max_per_class: int | None = 200, seed: int = 0) -> TaskData:
    """Topic of an English chatbot utterance; the categories (YAML files) with enough of them.

    Args:
        min_per_class: keep the categories with at least this many distinct utterances (with 40:
            ai, coding, computers, conversations, emotion, literature, money, movies, psychology,
            science, sports, trivia).
        max_per_class: cap per category (trivia alone has over 500), ``None`` for no cap.
        seed: which utterances the cap keeps.
    """
    pairs = [(category, text) for language, category, text in _utterances() if language == "english"]
    return _task(
        _unambiguous(pairs),
        min_per_class,
        max_per_class,
        seed,
        description="Topic of an English chatbot prompt or reply.",
    )


@register_loader("chatterbot-language")
def load_chatterbot_language(
    min_per_class: int = 100,
    max_per_class: int | None = 300,
    seed: int = 0,
    exclude: tuple[str, ...] | list[str] = ("traditionalchinese",),
) -> TaskData:
    """Language of a chatbot utterance, over the corpus's languages with enough utterances.

    Args:
        min_per_class: keep the languages with at least this many distinct utterances.
        max_per_class: cap per language, ``None`` for no cap.
        seed: which utterances the cap keeps.
        exclude: languages left out. ``traditionalchinese`` by default: a hundred of its
            utterances are verbatim ``chinese`` ones and many more use only characters common to
            both scripts, so no model could tell the two apart on them.
    """
    excluded = set(exclude)
    pairs = [(language, text) for language, _, text in _utterances() if language not in excluded]
    return _task(
        _unambiguous(pairs), min_per_class, max_per_class, seed, description="Language of a chatbot prompt or reply."
    )
