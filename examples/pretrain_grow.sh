#!/usr/bin/env bash
# Progressive depth training (Bu, arXiv 2511.04981): train a SOURCE_LAYERS-layer model
# (0 or 1) for most of the run, grow it to TARGET_LAYERS at tau = GROW_AT_FRACTION x TRAIN_ITERS,
# then finish under the WSD schedule. The small phase runs pure data parallel; the grown model
# runs GROW_TP x GROW_PP over the same ranks. Every setting below is an environment variable;
# extra arguments go to the trainer. Re-running with the same CHECKPOINT_DIR resumes.
# Family defaults: examples/pretrain_llama3_grow.sh, pretrain_gpt2_grow.sh, pretrain_deepseekv3_grow.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-localhost}
MASTER_PORT=${MASTER_PORT:-6000}

MODEL=${MODEL:?set MODEL=llama3, gpt2 or deepseek-v3 (or use the pretrain_<family>_grow.sh scripts)}
PRESET=${PRESET:?set PRESET}
SOURCE_LAYERS=${SOURCE_LAYERS:-1}
TARGET_LAYERS=${TARGET_LAYERS:?set TARGET_LAYERS}
TP=${TP:-1}; PP=${PP:-1}                 # layout of the small phase (pure DP by default)
GROW_TP=${GROW_TP:-2}; GROW_PP=${GROW_PP:-1}
EP=${EP:-1}; GROW_EP=${GROW_EP:-$EP}      # expert parallelism (deepseek-v3 only)
GROW_AT_FRACTION=${GROW_AT_FRACTION:-0.8}
GROW_PLACEMENT=${GROW_PLACEMENT:-stack}   # the trained layers first: no loss jump after growth (docs/growth.md)
GROW_INIT=${GROW_INIT:-copy_zeroL}
GROW_OPTIMIZER_STATE=${GROW_OPTIMIZER_STATE:-inherit}

TRAIN_ITERS=${TRAIN_ITERS:-20000}
MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-4}
GLOBAL_BATCH_SIZE=${GLOBAL_BATCH_SIZE:-256}
SEQ_LENGTH=${SEQ_LENGTH:-2048}
LR=${LR:-3e-4}
DEVICE=${DEVICE:-auto}

DATA_PATH=${DATA_PATH:-demo}             # a prefix, several, or a blend: DATA_PATH="0.3 web 0.7 code"
TOKENIZER_MODEL=${TOKENIZER_MODEL:-}
RUN_DIR=${RUN_DIR:-runs/${MODEL}_grow_${PRESET}_${SOURCE_LAYERS}to${TARGET_LAYERS}}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-$RUN_DIR/ckpt}

DISTRIBUTED_ARGS=(--nproc_per_node "$GPUS_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK"
                  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
MODEL_ARGS=(--model "$MODEL" --preset "$PRESET" --num-layers "$SOURCE_LAYERS" --seq-length "$SEQ_LENGTH"
            --max-position-embeddings "$SEQ_LENGTH" --device "$DEVICE")
GROWTH_ARGS=(--grow-at-fraction "$GROW_AT_FRACTION" --grow-to-layers "$TARGET_LAYERS"
             --grow-placement "$GROW_PLACEMENT" --grow-init "$GROW_INIT"
             --grow-optimizer-state "$GROW_OPTIMIZER_STATE"
             --grow-tensor-model-parallel-size "$GROW_TP" --grow-pipeline-model-parallel-size "$GROW_PP")
PARALLEL_ARGS=(--tensor-model-parallel-size "$TP" --pipeline-model-parallel-size "$PP")
if [ "$MODEL" = deepseek-v3 ]; then
  PARALLEL_ARGS+=(--expert-model-parallel-size "$EP")
  GROWTH_ARGS+=(--grow-expert-model-parallel-size "$GROW_EP")
  MODEL_ARGS+=(--moe-first-dense-layers "${MOE_FIRST_DENSE_LAYERS:-1}")
fi
TRAINING_ARGS=(--micro-batch-size "$MICRO_BATCH_SIZE" --global-batch-size "$GLOBAL_BATCH_SIZE"
               --train-iters "$TRAIN_ITERS" --lr "$LR" --min-lr 0 --lr-decay-style wsd
               --lr-warmup-fraction 0.02 --lr-wsd-decay-fraction 0.1 --weight-decay 0.1 --clip-grad 1.0)
read -r -a DATA_WORDS <<< "$DATA_PATH"  # (one word per prefix and weight, as Megatron-LM's scripts pass them)
DATA_ARGS=(--data-path "${DATA_WORDS[@]}" ${TOKENIZER_MODEL:+--tokenizer-model "$TOKENIZER_MODEL"} --split 98,2,0)
OUTPUT_ARGS=(--save "$CHECKPOINT_DIR" --save-interval "${SAVE_INTERVAL:-1000}"
             --eval-interval "${EVAL_INTERVAL:-500}" --eval-iters "${EVAL_ITERS:-20}"
             --metrics-file "$RUN_DIR/metrics.jsonl" --tensorboard-dir "$RUN_DIR/tensorboard")
if [ -f "$CHECKPOINT_DIR/latest_checkpointed_iteration.txt" ]; then
  OUTPUT_ARGS+=(--load "$CHECKPOINT_DIR")
fi

# the flags these variables set, so that an error about a flag names its variable too
export MEGATRON_GROW_FLAG_NAMES="--model=MODEL --preset=PRESET --num-layers=SOURCE_LAYERS --seq-length=SEQ_LENGTH
--device=DEVICE --grow-at-fraction=GROW_AT_FRACTION --grow-to-layers=TARGET_LAYERS --grow-placement=GROW_PLACEMENT
--grow-init=GROW_INIT --grow-optimizer-state=GROW_OPTIMIZER_STATE --grow-tensor-model-parallel-size=GROW_TP
--grow-pipeline-model-parallel-size=GROW_PP --grow-expert-model-parallel-size=GROW_EP
--tensor-model-parallel-size=TP --pipeline-model-parallel-size=PP --expert-model-parallel-size=EP
--moe-first-dense-layers=MOE_FIRST_DENSE_LAYERS --micro-batch-size=MICRO_BATCH_SIZE
--global-batch-size=GLOBAL_BATCH_SIZE --train-iters=TRAIN_ITERS --lr=LR --data-path=DATA_PATH
--tokenizer-model=TOKENIZER_MODEL --save=CHECKPOINT_DIR --load=CHECKPOINT_DIR --save-interval=SAVE_INTERVAL
--eval-interval=EVAL_INTERVAL --eval-iters=EVAL_ITERS"
exec "${PYTHON:-python3}" -m torch.distributed.run "${DISTRIBUTED_ARGS[@]}" -m megatron_grow.train \
  "${MODEL_ARGS[@]}" "${GROWTH_ARGS[@]}" "${PARALLEL_ARGS[@]}" "${TRAINING_ARGS[@]}" \
  "${DATA_ARGS[@]}" "${OUTPUT_ARGS[@]}" "$@"
