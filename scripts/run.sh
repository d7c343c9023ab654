#!/usr/bin/env bash
# Install what is missing, then run the built-in default job: a small 1-layer LLaMA3 (ready to be
# grown) trained on the bundled CPython-docs corpus, on 2 processes (CPU, gloo) unless told otherwise.
# Extra arguments are passed to the trainer, e.g. `bash scripts/run.sh --train-iters 50`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
NPROC=${NPROC:-2}
RUN_DIR=${RUN_DIR:-runs/quickstart-$(date +%Y%m%d-%H%M%S)}
exec "${PYTHON:-python3}" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m megatron_grow.train \
  --model llama3 --preset tiny --num-layers 1 --data-path demo \
  --micro-batch-size 8 --global-batch-size 16 --train-iters 300 --lr 3e-3 --lr-decay-style wsd \
  --eval-interval 100 --eval-iters 4 \
  --save "$RUN_DIR/ckpt" --metrics-file "$RUN_DIR/metrics.jsonl" "$@"
