#!/usr/bin/env bash
# The test command (README, CI): lint, the import-layer check, then the test suite.
#   ./scripts/check.sh [pytest args...]
# import-linter reads packages from disk, but here the installed namespace is assembled from
# top-level folders (pyproject's package-dir), so the check runs on a copy laid out as installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
.venv/bin/ruff check .
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
.venv/bin/python - "$tree" <<'PY'
import shutil, sys, tomllib
from pathlib import Path

mapping = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
for package, folder in sorted(mapping.items()):  # parents first: "selfimprove" before "selfimprove.flows"
    target = Path(sys.argv[1], *package.split("."))
    target.mkdir(parents=True, exist_ok=True)
    for source in Path(folder).glob("*.py"):
        shutil.copy(source, target / source.name)
PY
(cd "$tree" && PYTHONPATH="$tree" "$root/.venv/bin/lint-imports" --config "$root/pyproject.toml" --no-cache)
exec .venv/bin/python -m pytest -q "$@"
