"""Names and writers shared by everything that writes a suite folder (docs/SUITE.md)."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..codec.container import atomic_write_bytes

Log = Callable[[str], None]  # one line at a time
FLEX_ROUTER_FILE = "router-flex.safetensors"  # Auto-FlexSwitch's low-rank router
FLEX_MAIN_STEM = "flex-kl"  # the journal's main FlexSwitch run: KL loss, LGS + BAS
FLEX_VAL_FILE = "lambda-val.json"  # FlexSwitch runs on validation and the lambda chosen from them (A16)


def write_json(path: str, obj) -> None:
    """A suite's JSON file: indented UTF-8, written atomically (temporary file, then rename)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
