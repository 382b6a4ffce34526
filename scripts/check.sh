#!/usr/bin/env bash
# Lint, format and type checks; test.sh runs this before the tests. Configuration: pyproject.toml
# ([tool.ruff], [tool.mypy]); the tools are pinned in requirements-dev.txt.
#   bash scripts/check.sh          ruff check, ruff format --check, mypy (exit 1 on any finding)
#   bash scripts/check.sh --fix    first apply ruff's safe fixes and its formatting
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py="${PYTHON:-.venv/bin/python}"
if [ "${1:-}" = "--fix" ]; then
    "$py" -m ruff check --fix --quiet . || true
    "$py" -m ruff format --quiet .
fi
echo "check: ruff check" >&2
"$py" -m ruff check .
echo "check: ruff format --check" >&2
"$py" -m ruff format --check .
echo "check: mypy" >&2
"$py" -m mypy
