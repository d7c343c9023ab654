"""muP (maximal-update parametrisation, Tensor Programs V) for width, optional depth-muP multipliers.

Enabled with ``--mup --mup-base-hidden-size B`` (the width the hyperparameters were tuned at);
width multiplier ``m = hidden_size / B``. The head dimension stays fixed as width grows (more
heads), so attention keeps its 1/sqrt(d_head) scale. At m = 1 the muP model IS the standard one.

Rules (global parameter names, see megatron_grow/models/init.py):

* init std (applied by models/init.py, a function of (seed, global name) as before):
    hidden matrices (2-D weights inside ``decoder.layers``)   init_method_std / sqrt(m)
      (residual output projections linear_proj / linear_fc2 keep their extra 1/sqrt(2 L))
    word / position embeddings, output layer (tied or not)    init_method_std
    biases 0, norm scales 1                                   unchanged
* output multiplier: the hidden states entering ``output_layer`` are multiplied by 1/m, i.e.
  logits * 1/m (a forward pre-hook, on the pipeline stage that holds the output layer; tied and
  untied heads alike).
* Adam LR (``lr_multiplier``, applied by megatron_grow/optim when it builds its param groups):
  1/m for hidden matrices, 1 for everything else (embeddings, output layer, biases, norms).
  Muon-NSGD: 1 everywhere (its spectral update scale sqrt(max(1, rows/cols)) already transfers
  across width).
* depth (``--mup-base-num-layers B_L``, optional): every residual branch output (attention
  linear_proj and MLP linear_fc2 outputs, bias included) is multiplied by sqrt(B_L / L).
  This multiplier depends on the depth L, so growing L0 -> L1 layers rescales the branches of the
  trained layers by sqrt(L0 / L1): zero / copy_zeroL growth is function-preserving only without
  it (or from 0 layers, where no trained branch exists). The LR multipliers carry no depth factor.

The output layer is muP's "readout" in its output-multiplier form (Tensor Programs V; the
``mup`` package's MuReadout + MuAdam): its effective weight W / m has init std init_method_std / m
and Adam update ~ lr / m, which is the readout rule (init var 1/fan_in^2, LR 1/fan_in). Scaling
its init or LR by a further 1/m on top of the multiplier would shrink the logits as width^-1..-1.5
(the coordinate check, tools/mup_coord_check.py, shows exactly that), so the untied head is
treated like the tied one: same init as the embeddings, LR multiplier 1.

Growth builds the target model from the target config (models.build_model), so fresh ``random``
layers get the muP std of the target width and the 1/sqrt(2 L) of the target depth, and the depth
multiplier of the target depth.
"""

from __future__ import annotations

import math

from megatron_grow.config import RunConfig
from megatron_grow.models.names import in_layer_matrix, residual_output_modules


def mup_problems(cfg: RunConfig) -> list[str]:
    """--mup and its base sizes."""
    P = []
    if cfg.mup and not cfg.mup_base_hidden_size:
        P.append("--mup needs --mup-base-hidden-size (the width the hyperparameters were tuned at)")
    if (cfg.mup_base_hidden_size or cfg.mup_base_num_layers) and not cfg.mup:
        P.append("--mup-base-hidden-size / --mup-base-num-layers take effect only with --mup; add --mup")
    for name in ("mup_base_hidden_size", "mup_base_num_layers"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            P.append(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(cfg, name)})")
    return P


def enabled(cfg) -> bool:
    return bool(getattr(cfg, "mup", False))


def width_mult(cfg) -> float:
    """m = hidden_size / mup_base_hidden_size with --mup, else 1."""
    if not enabled(cfg):
        return 1.0
    return cfg.hidden_size / cfg.mup_base_hidden_size


def depth_mult(cfg) -> float:
    """Residual-branch multiplier sqrt(mup_base_num_layers / num_layers) (1 when not requested)."""
    if not enabled(cfg) or not getattr(cfg, "mup_base_num_layers", None) or not cfg.num_layers:
        return 1.0
    return math.sqrt(cfg.mup_base_num_layers / cfg.num_layers)


def init_std_multiplier(name: str, ndim: int, m: float) -> float:
    """Factor on init_method_std that muP gives the parameter with global name ``name``:
    1/sqrt(m) for hidden matrices, 1 for everything else (embeddings, output layer: its 1/m is
    the forward multiplier, see the module docstring)."""
    return 1.0 / math.sqrt(m) if in_layer_matrix(name, ndim) else 1.0


def lr_multiplier(cfg, global_name: str, param=None) -> float:
    """Per-parameter LR multiplier for the optimizer (see the module docstring)."""
    if not enabled(cfg) or cfg.optimizer != "adam":
        return 1.0
    ndim = param.ndim if param is not None else 2
    return 1.0 / width_mult(cfg) if in_layer_matrix(global_name, ndim) else 1.0


def install(model, cfg) -> dict:
    """Register the muP forward multipliers on a GPTModel stage (no-op with muP off).

    Returns the hook handles, {"output": [...], "depth": [...]}, also kept as ``model.mup_hooks``."""
    handles = {"output": [], "depth": []}
    model.mup_hooks = handles
    if not enabled(cfg):
        return handles
    out_mult = 1.0 / width_mult(cfg)
    if getattr(model, "post_process", False) and getattr(model, "output_layer", None) is not None and out_mult != 1.0:
        handles["output"].append(model.output_layer.register_forward_pre_hook(
            _scale_input(out_mult), with_kwargs=True))
    a = depth_mult(cfg)
    if a != 1.0:
        for layer in model.decoder.layers:
            for module in residual_output_modules(layer):
                handles["depth"].append(module.register_forward_hook(_scale_output(a)))
    return handles


def _scale_input(mult: float):
    def hook(module, args, kwargs):
        if args:
            return (args[0] * mult, *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["input_"] = kwargs["input_"] * mult
        return args, kwargs

    return hook


def _scale_output(mult: float):
    """megatron linears return (output, bias-or-None), the bias added later (bias-dropout-add):
    scale both, so the whole branch output, bias included, is scaled."""

    def hook(module, args, output):
        if isinstance(output, tuple):
            return tuple(o * mult if o is not None else None for o in output)
        return output * mult

    return hook
