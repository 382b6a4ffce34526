"""``python -m tswitch``: compress fine-tunes into a switch pack, inspect, decompress and merge it.

Every failure the user can cause (missing or corrupt files, a pack made for another base model,
shape mismatches, alpha outside [0, 1), unknown tasks) prints one line to stderr and exits with
status 2; outputs are written atomically, so a failed command leaves no partial file.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import packs, suites  # noqa: F401 - importing them registers their commands
from .base import COMMANDS, UsageError, command, parse_pairs

__all__ = ["COMMANDS", "UsageError", "build_parser", "command", "main", "parse_pairs"]


# -- entry point ------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, like every other user error
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    # the console script says "tswitch", `python -m tswitch` says that (argv[0] is then __main__.py)
    prog = "tswitch" if os.path.basename(sys.argv[0] or "") == "tswitch" else "python -m tswitch"
    parser = _Parser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (fill, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        fill(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # progress bars of weight loading would break the one-line-on-stderr contract of errors
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported before us (e.g. by a host program): switch it off there
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (status 2) and --help (status 0)
        return int(exc.code or 0)
    try:
        return args.run(args)
    except (ValueError, OSError) as exc:  # PackError, WeightsError, UsageError are ValueErrors
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"tswitch {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tswitch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
