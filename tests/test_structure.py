"""The package's shape (../shared/STYLE.md): imports go one way, no package cycles, a pure core.

Every ``import`` and ``from … import`` of every module is read with ``ast`` — the lazy ones inside
functions and the ``TYPE_CHECKING`` ones included — and folded into a graph of units
(``tswitch.<subpackage or module>``). ``python -m pytest tests/test_structure.py`` is the check.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tswitch")
LOWER = ("core", "codec", "flex", "routing", "merging", "models")  # the algorithm packages
UPPER = ("suites", "app", "teach", "cli")  # orchestration and front ends


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] == "__version__":
        return "tswitch"
    return parts[1]


def import_graph() -> dict[str, set[str]]:
    """``{unit: units it imports}`` over every module under ``tswitch/``."""
    edges: dict[str, set[str]] = defaultdict(set)
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = "tswitch" + path[len(ROOT) : -3].replace(os.sep, ".")
            module = module.removesuffix(".__init__")
            package = module if name == "__init__.py" else module.rsplit(".", 1)[0]
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                targets = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                        prefix = ".".join(base)
                        targets = (
                            [f"{prefix}.{node.module}"] if node.module else [f"{prefix}.{a.name}" for a in node.names]
                        )
                    elif node.module:
                        targets = [node.module]
                for target in targets:
                    if target.split(".")[0] == "tswitch" and _unit(target) != _unit(module):
                        edges[_unit(module)].add(_unit(target))
    return edges


def test_algorithm_packages_never_import_orchestration_or_the_app():
    graph = import_graph()
    bad = {(a, b) for a in LOWER for b in graph.get(a, ()) if b in UPPER}
    assert not bad, f"upward imports: {sorted(bad)}"
    assert not [a for a, targets in graph.items() if "app" in targets], "nothing imports the app"


def test_core_and_codec_import_nothing_of_ours_but_the_version():
    graph = import_graph()
    assert graph.get("core", set()) <= {"tswitch"} and graph.get("codec", set()) <= {"tswitch"}
    code = "import sys, tswitch.core, tswitch.codec; print(sorted(m for m in sys.modules if m.startswith('tswitch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)  # a printed list of strings
    assert loaded and all(m == "tswitch" or m.startswith(("tswitch.core", "tswitch.codec")) for m in loaded), loaded


def test_no_import_cycle_between_packages():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_graph_sees_lazy_and_relative_imports():
    """The reader is not vacuous: known edges, lazy (inside functions) and relative, are found."""
    graph = import_graph()
    assert "codec" in graph["pack"] and "core" in graph["pack"]  # from .codec / .core
    assert "suites" in graph["cli"]  # lazy, inside the command functions
    assert "models" in graph["merging"]  # under TYPE_CHECKING


def library_files() -> list[str]:
    """Every ``.py`` file of the library."""
    return [os.path.join(d, n) for d, _, files in os.walk(ROOT) for n in sorted(files) if n.endswith(".py")]


def test_library_code_changes_no_process_global_state():
    """No seed, umask or torch function of the process is set by library code (the app serves many
    requests in one process): seeds go through generators, BatchNorm through the call's weights."""
    needles = (
        "torch.manual_seed(",
        "np.random.seed(",
        "random.seed(",
        "os.umask(",
        ".batch_norm = ",
        "set_num_threads(",
    )
    allowed = {  # command-line entry points own their process
        os.path.join(ROOT, "cli", "suites.py"): {"set_num_threads("},
        os.path.join(ROOT, "suites", "checkpoints", "cli.py"): {"set_num_threads("},
    }
    found = []
    for path in library_files():
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                code = line.split("#")[0]
                for needle in needles:
                    if needle in code and needle not in allowed.get(path, set()):
                        found.append(f"{path}:{i}: {line.strip()}")
    assert not found, "\n".join(found)


def test_library_code_has_no_assert_statements():
    """Library invariants raise explicit errors: ``assert`` vanishes under ``python -O``."""
    found = []
    for path in library_files():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        found += [f"{path}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert not found, "\n".join(found)
