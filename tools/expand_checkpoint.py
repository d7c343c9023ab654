"""Grow a checkpoint offline: more layers, model and optimizer state, any layout to any layout.

    python tools/expand_checkpoint.py --load runs/src/ckpt --save runs/grown/ckpt \
        --target-num-layers 12 --placement bottom --init copy --optimizer-state inherit
    python tools/expand_checkpoint.py --load runs/src/ckpt --target-num-layers 12 --dry-run

Checkpoints are keyed per global layer and per tensor shard, so they load into any TP/PP layout:
the tool runs in one process by default (TP1/PP1); launch it with torchrun at
--target-tensor-model-parallel-size x --target-pipeline-model-parallel-size (x
--target-expert-model-parallel-size for MoE models) processes when the model does not fit one process. \
Training resumed from --save continues like online growth would
(same iteration, LR schedule, data position). Nothing is written before every check passed, and
--load is only read.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_grow.growth.plan import INITS, OPTIMIZER_STATE_MODES, PLACEMENTS  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", required=True, help="source checkpoint directory (a --save of the trainer)")
    p.add_argument("--save", help="destination directory; must not exist yet")
    p.add_argument("--ckpt-step", type=int, help="iteration of --load to grow (default: the latest)")
    p.add_argument("--target-num-layers", type=int, required=True)
    p.add_argument("--placement", default="bottom", choices=PLACEMENTS)
    p.add_argument("--init", default="random", choices=INITS)
    p.add_argument("--optimizer-state", default="inherit", choices=OPTIMIZER_STATE_MODES)
    p.add_argument("--target-tensor-model-parallel-size", type=int, default=1)
    p.add_argument("--target-pipeline-model-parallel-size", type=int, default=1)
    p.add_argument("--target-expert-model-parallel-size", type=int, default=1, help="MoE models (deepseek-v3)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return p.parse_args(argv)


def _kinds(common, args):
    from megatron_grow.models import growth_kinds

    return growth_kinds(dict(common["config"], model=common["family"]), common["num_layers"], args.target_num_layers)


def check(args) -> tuple[dict, int]:
    """Every problem with the request, before anything is written. Returns (source common, iteration)."""
    from megatron_grow import checkpointing
    from megatron_grow.growth.plan import problems

    it = checkpointing.latest_iteration(args.load) if os.path.isdir(args.load) else None
    if args.ckpt_step is not None:
        if args.ckpt_step not in checkpointing.iterations(args.load):
            sys.exit(f"error: {checkpointing.no_such_step(args.load, args.ckpt_step)}")
        it = args.ckpt_step
    if it is None:
        sys.exit(f"error: {checkpointing.no_checkpoint(args.load)}")
    path = checkpointing.iter_dir(args.load, it)
    if not os.path.isfile(os.path.join(path, "metadata.json")) or not os.path.isfile(os.path.join(path, "common.pt")):
        sys.exit(f"error: --load {args.load}: checkpoint {path} is missing or truncated (no metadata.json/common.pt)")
    damage = checkpointing.verify_checksums(path)  # (the trainer refuses such a checkpoint too)
    if damage:
        sys.exit(f"error: --load {args.load}: the checkpoint of iteration {it} is damaged: {damage}; nothing was "
                 "written. Grow another with --ckpt-step N")
    try:
        common = checkpointing.read_common_or_raise(args.load, it, fallback=False)
    except checkpointing.CheckpointError as e:  # a damaged common.pt
        sys.exit(f"error: {e}")
    P = [p.replace("--grow-to-layers", "--target-num-layers").replace("--grow-placement", "--placement")
          .replace("--grow-init", "--init") for p in problems(common["num_layers"], args.target_num_layers,
                                                              args.placement, args.init, kinds=_kinds(common, args))]
    if not args.dry_run:
        if not args.save:
            P.append("--save DIR is required (or pass --dry-run)")
        elif os.path.exists(args.save):
            P.append(f"--save {args.save} exists; choose a new directory (nothing is overwritten)")
        elif os.path.abspath(args.save).startswith(os.path.join(os.path.abspath(args.load), "")):
            P.append(f"--save {args.save} lies inside --load {args.load}; choose a directory outside it (the "
                     "source checkpoint directory is only read)")
    P += [p.replace("--tensor-model-parallel-size", "--target-tensor-model-parallel-size")
          .replace("--pipeline-model-parallel-size", "--target-pipeline-model-parallel-size")
          .replace("--expert-model-parallel-size", "--target-expert-model-parallel-size")
          .replace("--num-layers", "--target-num-layers") for p in _target_problems(common, args)]
    if P:
        sys.exit("error: cannot expand the checkpoint:\n  - " + "\n  - ".join(P))
    return common, it


def _target_config(common: dict, args, tp: int, pp: int, ep: int, world: int):
    """The source run's flags at the target depth and layout (the pipeline split left to the default)."""
    from megatron_grow import config

    cfg = config.saved_config(common["config"])
    cfg.num_layers = args.target_num_layers
    cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.expert_model_parallel_size = tp, pp, ep
    cfg.decoder_first_pipeline_num_layers = cfg.decoder_last_pipeline_num_layers = cfg.pipeline_layers = None
    cfg.world_size = world
    return cfg


def _target_problems(common: dict, args) -> list[str]:
    """The trainer's own model and layout checks on the grown config at the target layout."""
    from megatron_grow import models

    tp, pp = args.target_tensor_model_parallel_size, args.target_pipeline_model_parallel_size
    ep = args.target_expert_model_parallel_size
    world = int(os.environ.get("WORLD_SIZE", 1))  # (one process writes a checkpoint for any layout)
    target = _target_config(common, args, tp, pp, ep, world if world != 1 else tp * pp * ep)
    return models.model_problems(target) + models.layout_problems(target)


def main(argv=None):
    from megatron_grow.train import _quiet

    _quiet()
    args = parse(argv)
    common, it = check(args)
    from megatron_grow.growth.plan import format_plan, make_plan

    plan = make_plan(common["num_layers"], args.target_num_layers, args.placement, args.init, _kinds(common, args))
    if args.dry_run:
        print(f"source: {args.load} iteration {it}, {common['num_layers']}-layer {common['family']}, "
              f"layout {common['layout']}")
        print(format_plan(plan, common["num_layers"], args.placement, args.init))
        print(f"optimizer state: {args.optimizer_state}")
        return
    expand(args, common, it, plan)


def expand(args, common, it, plan):
    import torch.distributed as dist

    from megatron_grow import checkpointing, platform, runstate
    from megatron_grow.growth.reshard import load_grown

    world = int(os.environ.get("WORLD_SIZE", 1))
    tp, pp, ep = (1, 1, 1) if world == 1 else (args.target_tensor_model_parallel_size,
                                               args.target_pipeline_model_parallel_size,
                                               args.target_expert_model_parallel_size)
    cfg = _target_config(common, args, tp, pp, ep, world)
    device = platform.resolve_device(cfg.device)
    _, _, dev = platform.init_distributed(device)
    platform.init_model_parallel(tp, pp, cfg.seed, ep)
    state = runstate.build_state(cfg, dev)
    src = checkpointing.iter_dir(args.load, it)
    try:
        grown = load_grown(src, state.module, state.optimizer, plan, args.optimizer_state)
    except (Exception, checkpointing.CheckpointException) as e:  # a shard that cannot be read (no checksums)
        sys.exit(f"error: {checkpointing.damaged(args.load, it, e, fallback=False)}")
    runstate.restore_progress(state, grown)
    state.scheduler.load_state_dict(common["scheduler"])
    out = checkpointing.save(args.save, it, state.module, state.optimizer, state.scheduler,
                             dict(runstate.common_state(cfg, state),
                                  grown_from={"load": os.path.abspath(args.load), "num_layers": common["num_layers"],
                                              "placement": args.placement, "init": args.init,
                                              "optimizer_state": args.optimizer_state}))
    if dist.get_rank() == 0:
        print(f"expanded {common['num_layers']} -> {args.target_num_layers} layers ({args.placement}, {args.init}, "
              f"optimizer state {args.optimizer_state}) at iteration {it}: {out}")
    platform.shutdown()


if __name__ == "__main__":
    main()
