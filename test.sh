#!/usr/bin/env bash
# The test command of the README: creates .venv on first use, runs the checks (scripts/check.sh: ruff
# lint and format, mypy), then the whole suite offline. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  # one pip command, so torch and torchvision are resolved together (never pin torch alone)
  .venv/bin/pip install -r requirements.txt -r requirements-dev.txt
elif ! .venv/bin/python -c "import ruff, mypy" 2>/dev/null; then
  .venv/bin/pip install -r requirements-dev.txt  # a .venv made before the checks existed
fi
bash scripts/check.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest -q "$@"
