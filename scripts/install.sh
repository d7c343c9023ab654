#!/usr/bin/env bash
# Install what is missing: torch (2.13.0; an existing CUDA build is left alone; TORCH_INDEX_URL picks the
# index, e.g. https://download.pytorch.org/whl/cpu for the CPU-only build), then this package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[install] torch not found: installing torch==2.13.0${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
  "$PY" -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
elif "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)"; then
  echo "[install] keeping the installed CUDA torch $("$PY" -c 'import torch; print(torch.__version__)')"
fi
extras=${1:-}
if ! "$PY" -c "import megatron_grow, megatron.core, sentencepiece, tqdm, psutil, xxhash${extras:+, pytest, xdist, tensorboard, matplotlib, triton, ruff, transformers, safetensors, wandb, pyarrow, tiktoken, tokenizers}" 2>/dev/null \
   || [ "$("$PY" -c 'import megatron_grow, os; print(os.path.dirname(os.path.dirname(megatron_grow.__file__)))' 2>/dev/null)" != "$PWD" ]; then
  echo "[install] pip install -e .${extras:+[$extras]}"
  "$PY" -m pip install -q -e ".${extras:+[$extras]}"
fi
