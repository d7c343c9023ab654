#!/usr/bin/env bash
# Progressive LLaMA3: a 1-layer model grown to the LLaMA3-1B depth (16 layers) at 0.8 T with
# copy_zeroL, the trained layer first (stack: the recommendation in docs/results.md), then TP2 for the grown model. Defaults are for one 8-GPU node; override any with env vars
# (see examples/pretrain_grow.sh), extra arguments go to the trainer.
#
#   bash examples/pretrain_llama3_grow.sh
#   DATA_PATH=/data/corpus TOKENIZER_MODEL=/data/tok.model NNODES=4 NODE_RANK=$SLURM_NODEID \
#     MASTER_ADDR=$HEAD bash examples/pretrain_llama3_grow.sh
export MODEL=llama3 PRESET=${PRESET:-1b} SOURCE_LAYERS=${SOURCE_LAYERS:-1} TARGET_LAYERS=${TARGET_LAYERS:-16}
export GROW_INIT=${GROW_INIT:-copy_zeroL} GROW_PLACEMENT=${GROW_PLACEMENT:-stack} GROW_TP=${GROW_TP:-2} SEQ_LENGTH=${SEQ_LENGTH:-2048}
export GLOBAL_BATCH_SIZE=${GLOBAL_BATCH_SIZE:-256} LR=${LR:-3e-4}
exec bash "$(dirname "$0")/pretrain_grow.sh" "$@"
