#!/usr/bin/env bash
# Install what is missing, then run the built-in default job: a 1-layer LLaMA3 trained on the bundled
# CPython-docs corpus and grown to 4 layers (copy_zeroL, the trained layer first: stack) after 80% of
# its iterations, on 2 processes (CPU, gloo) unless told otherwise, writing metrics, TensorBoard output and
# checkpoints under RUN_DIR; then the commands to go on (TensorBoard's among them). With
# RUN_DIR set to an earlier run's
# directory it resumes that run from its last checkpoint. Extra arguments are passed to the
# trainer, e.g. `bash scripts/run.sh --train-iters 50`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
NPROC=${NPROC:-2}
PY=${PYTHON:-python3}
"$PY" -c "import tensorboard" 2>/dev/null || {  # (the quickstart writes TensorBoard output)
  echo "[install] pip install tensorboard"; "$PY" -m pip install -q tensorboard; }
RUN_DIR=${RUN_DIR:-runs/quickstart-$(date +%Y%m%d-%H%M%S)}
LOAD=()
[ -f "$RUN_DIR/ckpt/latest_checkpointed_iteration.txt" ] && LOAD=(--load "$RUN_DIR/ckpt")  # resume where it stopped
"$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m megatron_grow.train \
  --model llama3 --preset tiny --num-layers 1 --grow-to-layers 4 --grow-at-fraction 0.8 --grow-init copy_zeroL \
  --grow-placement stack \
  --data-path demo --micro-batch-size 8 --global-batch-size 16 --train-iters 300 --lr 3e-3 --lr-decay-style wsd \
  --eval-interval 100 --eval-iters 4 \
  --save "$RUN_DIR/ckpt" --metrics-file "$RUN_DIR/metrics.jsonl" --tensorboard-dir "$RUN_DIR/tensorboard" \
  "${LOAD[@]}" "$@"
cat <<NEXT

next:
  resume it if it was stopped:             RUN_DIR=$RUN_DIR bash scripts/run.sh
  export to HuggingFace:                   $PY tools/export_hf.py --load $RUN_DIR/ckpt --out $RUN_DIR/hf
  plot the losses:                         $PY tools/plot_metrics.py $RUN_DIR/metrics.jsonl
  watch it in TensorBoard:                 tensorboard --logdir $RUN_DIR/tensorboard
NEXT
