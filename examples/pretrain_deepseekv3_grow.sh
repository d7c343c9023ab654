#!/usr/bin/env bash
# Progressive DeepSeekV3-MoE, ~0.2B active parameters (preset small: 16 layers of width 1024, MLA,
# 64 experts top-6 + 2 shared): a 1-layer MoE model grown to 16 layers at 0.8 T with copy_zeroL, the
# trained layer first (stack; every new layer starts from the trained layer's experts, router and
# expert bias, its output projections zeroed), experts split
# 8 ways (EP8) over one 8-GPU node in both phases. All layers are MoE by default so the 1-layer
# phase trains experts to copy; MOE_FIRST_DENSE_LAYERS=1 GROW_PLACEMENT=top keeps DeepSeek's dense
# first layer (the new MoE layers then take only the source's attention). Override any setting
# with env vars (see examples/pretrain_grow.sh); extra arguments go to the trainer.
#
#   bash examples/pretrain_deepseekv3_grow.sh
#   DATA_PATH=/data/corpus TOKENIZER_MODEL=/data/tok.model NNODES=4 NODE_RANK=$SLURM_NODEID \
#     MASTER_ADDR=$HEAD EP=16 GROW_EP=16 bash examples/pretrain_deepseekv3_grow.sh
export MODEL=deepseek-v3 PRESET=${PRESET:-small} SOURCE_LAYERS=${SOURCE_LAYERS:-1} TARGET_LAYERS=${TARGET_LAYERS:-16}
export GROW_INIT=${GROW_INIT:-copy_zeroL} GROW_TP=${GROW_TP:-1} EP=${EP:-8} GROW_EP=${GROW_EP:-${EP:-8}}
export MOE_FIRST_DENSE_LAYERS=${MOE_FIRST_DENSE_LAYERS:-0} SEQ_LENGTH=${SEQ_LENGTH:-4096}
export GLOBAL_BATCH_SIZE=${GLOBAL_BATCH_SIZE:-256} MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-2} LR=${LR:-3e-4}
exec bash "$(dirname "$0")/pretrain_grow.sh" "$@"
