"""Write the bundled example tasks of the app's *Teach a new task* tab (``tswitch/teach/examples/``).

Both come from chatterbot-corpus (BSD-3-Clause), read by the suites' own loader, and are tasks the
text-minilm suite does not hold: the English chat categories too small for its ``chat-topic`` task,
and the languages too small for its ``chat-language`` task. ``python demos/make_teach_examples.py``
rewrites them (deterministically).
"""

from __future__ import annotations

import argparse
import json
import os

from tswitch.suites.data.chatterbot import _unambiguous, _utterances

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tswitch", "teach", "examples")
SOURCE = "chatterbot-corpus 1.3.3 (PyPI), chatterbot_corpus/data/<language>/<category>.yml"
LICENSE = "BSD-3-Clause (chatterbot-corpus, Gunther Cox)"
EXAMPLES = {
    "chat-small-talk": {
        "description": "Topic of an English chatbot line, among categories the suite's chat-topic leaves out.",
        "by": "category",
        "language": "english",
        "classes": ("food", "gossip", "greetings", "history", "humor", "politics"),
    },
    "chat-more-languages": {
        "description": "Language of a chatbot line, among languages the suite's chat-language leaves out.",
        "by": "language",
        "classes": ("hindi", "oriya", "russian", "swedish", "tamil", "yoruba"),
    },
}


def rows_of(spec: dict, per_class: int) -> list[list[str]]:
    utterances = _utterances()
    if spec["by"] == "category":
        pairs = [(c, t) for lang, c, t in utterances if lang == spec["language"]]
    else:
        pairs = [(lang, t) for lang, _, t in utterances]
    by_class = _unambiguous(pairs)
    return [[c, " ".join(t.split())] for c in spec["classes"] for t in by_class[c][:per_class]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40, help="first N distinct lines of each class")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    for name, spec in EXAMPLES.items():
        rows = rows_of(spec, args.per_class)
        head = {"name": name, "description": spec["description"], "source": SOURCE, "license": LICENSE}
        body = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)  # one row a line: readable diffs
        with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "rows": [\n' + body + "\n]}\n")
        print(f"{name}: {len(rows)} lines, {len(spec['classes'])} classes")


if __name__ == "__main__":
    main()
