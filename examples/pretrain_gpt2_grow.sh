#!/usr/bin/env bash
# Progressive GPT2: a 1-layer model grown to the 124M model's 12 layers at 0.8 T with copy_zeroL, the
# trained layer first (stack), as docs/results.md recommends; the paper's headline run (0 layers, random
# init) is SOURCE_LAYERS=0 GROW_INIT=random GROW_PLACEMENT=bottom. Defaults are for one 8-GPU node;
# override any with env vars (see examples/pretrain_grow.sh).
#
#   bash examples/pretrain_gpt2_grow.sh
#   PRESET=7b TARGET_LAYERS=60 GROW_TP=8 GROW_PP=4 NNODES=4 bash examples/pretrain_gpt2_grow.sh
export MODEL=gpt2 PRESET=${PRESET:-124m} SOURCE_LAYERS=${SOURCE_LAYERS:-1} TARGET_LAYERS=${TARGET_LAYERS:-12}
export GROW_INIT=${GROW_INIT:-copy_zeroL} GROW_PLACEMENT=${GROW_PLACEMENT:-stack} GROW_TP=${GROW_TP:-1} SEQ_LENGTH=${SEQ_LENGTH:-1024}
export GLOBAL_BATCH_SIZE=${GLOBAL_BATCH_SIZE:-512} LR=${LR:-6e-4}
exec bash "$(dirname "$0")/pretrain_grow.sh" "$@"
