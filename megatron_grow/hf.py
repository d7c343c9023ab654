"""HuggingFace transformers <-> our checkpoints: the names and layouts of each family's weights.

A checkpoint holds every weight as one global tensor (ShardedTensors keyed per layer), so it reads
without a process group into full tensors, whatever TP/PP/EP layout saved it. Two layouts differ from
HF's: the fused QKV projection is grouped per KV group ([q heads of group g; k_g; v_g] for each g), and
the gated MLP's first projection is [gate; up]. GPT-2's HF modules are Conv1D (weights transposed).
DeepSeekV3's routed experts are stacked ([experts, 2 x ffn, hidden] and [experts, hidden, ffn]) where
HF's files (the Hub format) hold one gate/up/down per expert; its MLA weights are HF's as they are
(per head [nope; rope] rows, the kv down-projection [latent; rope]), and both rotate the RoPE dims
as interleaved pairs (HF's rope_interleave).
"""

from __future__ import annotations

import os
import warnings

import torch

SUPPORTED = ("llama3", "gpt2", "deepseek-v3")
HF_CLASS = {"llama3": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel", "deepseek-v3": "DeepseekV3ForCausalLM"}


class ConversionError(Exception):
    """A checkpoint or HF model this module cannot convert; the message says why and what would work."""


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """The model weights of checkpoint directory ``path`` (one iteration), as full tensors; no process group."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = dcp.FileSystemReader(path)
    meta = reader.read_metadata().state_dict_metadata
    sd = {k: torch.empty(m.size, dtype=m.properties.dtype) for k, m in meta.items()
          if isinstance(m, TensorStorageMetadata) and not k.startswith(("optimizer.", "rng_state"))}
    with warnings.catch_warnings():  # "torch.distributed is disabled ... assuming ... a single process": yes
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(sd, storage_reader=reader, no_dist=True)
    return sd


def _qkv_split(w: torch.Tensor, arch: dict) -> list[torch.Tensor]:
    """Megatron's fused QKV weight or bias (rows grouped per KV group) -> HF's q, k, v."""
    g, d = arch["num_query_groups"], arch["kv_channels"]
    per = arch["num_attention_heads"] // g
    x = w.reshape(g, (per + 2) * d, *w.shape[1:])
    return [t.reshape(-1, *w.shape[1:]).clone() for t in x.split([per * d, d, d], dim=1)]  # (own storage)


def _qkv_join(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, arch: dict) -> torch.Tensor:
    """HF's q, k, v (weights or biases) -> megatron's fused QKV, rows grouped per KV group."""
    g = arch["num_query_groups"]
    return torch.cat([t.reshape(g, -1, *t.shape[1:]) for t in (q, k, v)], dim=1).reshape(-1, *q.shape[1:])


def _pad_vocab(w: torch.Tensor, arch: dict) -> torch.Tensor:
    """Rows for the vocabulary padding (never a token): zeros, so their logits are 0."""
    return torch.cat([w, w.new_zeros(arch["padded_vocab_size"] - w.shape[0], *w.shape[1:])])


def _one_plus(arch: dict) -> float:
    """What a norm scale of ours adds to become HF's: 1 with --apply-layernorm-1p (scale 1 + gamma), else 0."""
    return 1.0 if arch.get("layernorm_zero_centered_gamma") else 0.0


# How one of our tensors becomes HF's (export) and back (import). HF's side is one tensor, or a list.
CONVERSIONS = {
    None: (lambda w, a: w, lambda w, a: w),
    "norm": (lambda w, a: w + _one_plus(a), lambda w, a: w - _one_plus(a)),  # a norm's scale (gamma)
    "vocab": (lambda w, a: w[:a["vocab_size"]], _pad_vocab),  # drop / add the padding rows
    "t": (lambda w, a: w.t(), lambda w, a: w.t()),  # GPT-2's Conv1D holds [in, out]
    "qkv": (_qkv_split, lambda qkv, a: _qkv_join(*qkv, a)),
    "gate_up": (lambda w, a: [t.clone() for t in w.chunk(2)], lambda gu, a: torch.cat(gu)),
    "qkv_fused": (lambda w, a: torch.cat(_qkv_split(w, a)), lambda w, a: _qkv_join(*w.chunk(3), a)),  # GPT-2
    "qkv_fused_t": (lambda w, a: torch.cat(_qkv_split(w, a)).t(), lambda w, a: _qkv_join(*w.t().chunk(3), a)),
    # DeepSeekV3's stacked routed experts <-> HF's per expert [gate_0, up_0, gate_1, ...] and [down_0, ...]
    "experts_gate_up": (lambda w, a: [t.clone() for e in w for t in e.chunk(2)],
                        lambda gu, a: torch.stack([torch.cat(gu[i:i + 2]) for i in range(0, len(gu), 2)])),
    "experts_down": (lambda w, a: [e.clone() for e in w], lambda d, a: torch.stack(d)),
}


def _pairs(arch: dict) -> list[tuple[str, str | list[str], str | None]]:
    """(our checkpoint key, HF key or keys, conversion) for every weight of ``arch``."""
    n = arch["num_layers"]
    if arch["family"] == "llama3":
        top = [("embedding.word_embeddings.weight", "model.embed_tokens.weight", "vocab"),
               ("decoder.final_layernorm.weight", "model.norm.weight", "norm")]
        if not arch["tied_embeddings"]:
            top.append(("output_layer.weight", "lm_head.weight", "vocab"))
        ours, theirs = "decoder.layers.{}.", "model.layers.{}."
        layer = [("self_attention.linear_qkv.layer_norm_weight", "input_layernorm.weight", "norm"),
                 ("self_attention.linear_qkv.weight", ["self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                                       "self_attn.v_proj.weight"], "qkv"),
                 ("self_attention.linear_proj.weight", "self_attn.o_proj.weight", None),
                 ("mlp.linear_fc1.layer_norm_weight", "post_attention_layernorm.weight", "norm"),
                 ("mlp.linear_fc1.weight", ["mlp.gate_proj.weight", "mlp.up_proj.weight"], "gate_up"),
                 ("mlp.linear_fc2.weight", "mlp.down_proj.weight", None)]
    elif arch["family"] == "deepseek-v3":
        return _deepseek_v3_pairs(arch)
    else:
        top = [("embedding.word_embeddings.weight", "transformer.wte.weight", "vocab"),
               ("embedding.position_embeddings.weight", "transformer.wpe.weight", None),
               ("decoder.final_layernorm.weight", "transformer.ln_f.weight", "norm"),
               ("decoder.final_layernorm.bias", "transformer.ln_f.bias", None)]
        ours, theirs = "decoder.layers.{}.", "transformer.h.{}."
        layer = [("self_attention.linear_qkv.layer_norm_weight", "ln_1.weight", "norm"),
                 ("self_attention.linear_qkv.layer_norm_bias", "ln_1.bias", None),
                 ("self_attention.linear_qkv.weight", "attn.c_attn.weight", "qkv_fused_t"),
                 ("self_attention.linear_qkv.bias", "attn.c_attn.bias", "qkv_fused"),
                 ("self_attention.linear_proj.weight", "attn.c_proj.weight", "t"),
                 ("self_attention.linear_proj.bias", "attn.c_proj.bias", None),
                 ("mlp.linear_fc1.layer_norm_weight", "ln_2.weight", "norm"),
                 ("mlp.linear_fc1.layer_norm_bias", "ln_2.bias", None),
                 ("mlp.linear_fc1.weight", "mlp.c_fc.weight", "t"), ("mlp.linear_fc1.bias", "mlp.c_fc.bias", None),
                 ("mlp.linear_fc2.weight", "mlp.c_proj.weight", "t"), ("mlp.linear_fc2.bias", "mlp.c_proj.bias", None)]

    def at(i, name):
        return [theirs.format(i) + x for x in name] if isinstance(name, list) else theirs.format(i) + name

    return top + [(ours.format(i) + o, at(i, t), how) for i in range(n) for o, t, how in layer]


def _deepseek_v3_pairs(arch: dict) -> list[tuple[str, str | list[str], str | None]]:
    """DeepSeekV3: MLA attention, the first moe_first_dense_layers dense, the rest MoE (layer freq 1)."""
    from megatron_grow.models.deepseek_v3 import moe_layer_pattern

    top = [("embedding.word_embeddings.weight", "model.embed_tokens.weight", "vocab"),
           ("decoder.final_layernorm.weight", "model.norm.weight", "norm")]
    if not arch["tied_embeddings"]:
        top.append(("output_layer.weight", "lm_head.weight", "vocab"))
    q = ([("linear_q_down_proj", "q_a_proj"), ("q_layernorm", "q_a_layernorm"), ("linear_q_up_proj", "q_b_proj")]
         if arch["q_lora_rank"] else [("linear_q_proj", "q_proj")])
    attention = [(f"self_attention.{o}.weight", f"self_attn.{t}.weight", "norm" if "norm" in o else None)
                 for o, t in q + [
        ("linear_kv_down_proj", "kv_a_proj_with_mqa"), ("kv_layernorm", "kv_a_layernorm"),
        ("linear_kv_up_proj", "kv_b_proj"), ("linear_proj", "o_proj")]]
    norms = [("input_layernorm.weight", "input_layernorm.weight", "norm"),
             ("pre_mlp_layernorm.weight", "post_attention_layernorm.weight", "norm")]

    def mlp(ours, theirs):
        return [(f"{ours}.linear_fc1.weight", [f"{theirs}.gate_proj.weight", f"{theirs}.up_proj.weight"], "gate_up"),
                (f"{ours}.linear_fc2.weight", f"{theirs}.down_proj.weight", None)]

    E = range(arch["num_experts"])
    moe = [("mlp.router.weight", "mlp.gate.weight", None),
           ("mlp.router.expert_bias", "mlp.gate.e_score_correction_bias", None),
           ("mlp.experts.experts.linear_fc1.weight",
            [f"mlp.experts.{e}.{w}_proj.weight" for e in E for w in ("gate", "up")], "experts_gate_up"),
           ("mlp.experts.experts.linear_fc2.weight", [f"mlp.experts.{e}.down_proj.weight" for e in E], "experts_down"),
           *mlp("mlp.shared_experts", "mlp.shared_experts")]
    out = top
    for i, is_moe in enumerate(moe_layer_pattern(arch["num_layers"], arch["moe_first_dense_layers"] or 0,
                                                 arch["moe_layer_freq"])):
        for o, t, how in norms + attention + (moe if is_moe else mlp("mlp", "mlp")):
            out.append((f"decoder.layers.{i}.{o}",
                        [f"model.layers.{i}.{x}" for x in t] if isinstance(t, list) else f"model.layers.{i}.{t}", how))
    return out


def to_hf(sd: dict[str, torch.Tensor], arch: dict) -> dict[str, torch.Tensor]:
    """Our checkpoint's weights -> HF's names and layouts."""
    out = {}
    for ours, theirs, how in _pairs(arch):
        w = CONVERSIONS[how][0](sd[ours], arch)
        out.update(zip(theirs, w, strict=True) if isinstance(theirs, list) else {theirs: w})
    return out


def from_hf(hf: dict[str, torch.Tensor], arch: dict) -> dict[str, torch.Tensor]:
    """HF weights -> our checkpoint keys (the inverse of to_hf)."""
    return {ours: CONVERSIONS[how][1]([hf[t] for t in theirs] if isinstance(theirs, list) else hf[theirs], arch)
            for ours, theirs, how in _pairs(arch)}


def hf_config(arch: dict):
    """The transformers config of an architecture (see models.architecture)."""
    from transformers import DeepseekV3Config, GPT2Config, LlamaConfig

    common = dict(vocab_size=arch["vocab_size"], tie_word_embeddings=arch["tied_embeddings"],
                  dtype="float32", bos_token_id=None, eos_token_id=None)
    if arch["family"] == "deepseek-v3":
        k = arch["moe_router_topk"]
        return DeepseekV3Config(
            hidden_size=arch["hidden_size"], intermediate_size=arch["ffn_hidden_size"],
            moe_intermediate_size=arch["moe_ffn_hidden_size"], num_hidden_layers=arch["num_layers"],
            num_attention_heads=arch["num_attention_heads"], num_key_value_heads=arch["num_attention_heads"],
            n_shared_experts=arch["moe_shared_expert_intermediate_size"] // arch["moe_ffn_hidden_size"],
            n_routed_experts=arch["num_experts"], num_experts_per_tok=k,
            routed_scaling_factor=float(arch["moe_router_topk_scaling_factor"] or 1.0),
            n_group=arch["moe_router_num_groups"] or 1, topk_group=arch["moe_router_group_topk"] or 1,
            norm_topk_prob=k > 1,  # megatron normalises the top-k sigmoid scores when k > 1
            first_k_dense_replace=arch["moe_first_dense_layers"] or 0,
            q_lora_rank=arch["q_lora_rank"] or None, kv_lora_rank=arch["kv_lora_rank"],
            qk_nope_head_dim=arch["qk_head_dim"], qk_rope_head_dim=arch["qk_pos_emb_head_dim"],
            v_head_dim=arch["v_head_dim"], rope_interleave=True, hidden_act=arch["activation"],
            rms_norm_eps=arch["norm_epsilon"], max_position_embeddings=arch["max_position_embeddings"],
            rope_parameters={"rope_type": "default", "rope_theta": float(arch["rotary_base"])},
            attention_bias=False, num_nextn_predict_layers=0, **common)
    if arch["family"] == "llama3":
        return LlamaConfig(
            hidden_size=arch["hidden_size"], intermediate_size=arch["ffn_hidden_size"],
            num_hidden_layers=arch["num_layers"], num_attention_heads=arch["num_attention_heads"],
            num_key_value_heads=arch["num_query_groups"], head_dim=arch["kv_channels"], hidden_act=arch["activation"],
            rms_norm_eps=arch["norm_epsilon"], max_position_embeddings=arch["max_position_embeddings"],
            rope_parameters={"rope_type": "default", "rope_theta": float(arch["rotary_base"]),
                             **(arch.get("rope_scaling") or {})},
            attention_bias=False, mlp_bias=False, **common)
    return GPT2Config(
        n_embd=arch["hidden_size"], n_inner=arch["ffn_hidden_size"], n_layer=arch["num_layers"],
        n_head=arch["num_attention_heads"], n_positions=arch["max_position_embeddings"],
        activation_function={"gelu_tanh": "gelu_new", "gelu": "gelu"}[arch["activation"]],
        layer_norm_epsilon=arch["norm_epsilon"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)


def export_problems(common: dict) -> list[str]:
    arch, cfg = common.get("architecture"), common.get("config", {})
    if arch is None:
        return ["it was saved before checkpoints recorded their architecture (2026-12-02): load it with "
                "the current trainer and save it again (e.g. --load CKPT --save NEW --train-iters N+1)"]
    P = []
    if arch["family"] not in SUPPORTED:
        P.append(f"the {arch['family']} family has no export yet (supported: {', '.join(SUPPORTED)})")
    if cfg.get("mup"):
        P.append("it was trained with --mup, whose forward multipliers have no place in the HF model classes")
    if arch["rotary_percent"] != 1.0:
        P.append(f"--rotary-percent {arch['rotary_percent']}: HF's {HF_CLASS.get(arch['family'])} rotates every "
                 f"dimension of each head")
    if arch["rotary_interleaved"] or arch["softmax_scale"] is not None:
        P.append("its RoPE or attention scale is not the HF class's")
    if arch["family"] == "gpt2" and arch["num_query_groups"] != arch["num_attention_heads"]:
        P.append("GPT-2 in HF has no grouped-query attention")
    if arch["family"] == "deepseek-v3":
        P += _deepseek_v3_problems(arch)
    return P


def _deepseek_v3_problems(arch: dict) -> list[str]:
    """What HF's DeepseekV3 cannot express of a deepseek-v3 run (messages name our flags)."""
    P = []
    k, groups = arch["moe_router_topk"], arch["moe_router_num_groups"]
    if arch["moe_router_score_function"] != "sigmoid":
        P.append("--moe-router-score-function softmax: HF's DeepseekV3 router scores with a sigmoid")
    if arch["moe_layer_freq"] != 1:
        P.append(f"--moe-layer-freq {arch['moe_layer_freq']}: in HF's DeepseekV3 every layer after the first "
                 f"dense ones is MoE")
    if groups and groups > 1 and k // arch["moe_router_group_topk"] != 2:
        P.append(f"group-limited routing ranks groups by their top {k // arch['moe_router_group_topk']} scores "
                 f"(--moe-router-topk {k} / --moe-router-group-topk {arch['moe_router_group_topk']}), HF's "
                 f"DeepseekV3 by their top 2")
    shared, width = arch["moe_shared_expert_intermediate_size"] or 0, arch["moe_ffn_hidden_size"]
    if shared == 0 or shared % width:
        P.append(f"--moe-shared-expert-intermediate-size {shared}: HF's DeepseekV3 has n_shared_experts >= 1 "
                 f"shared experts of the routed experts' width ({width})")
    if not arch.get("rope_interleave", True):
        P.append("its MLA RoPE layout is not HF's")
    return P


TOKENIZER_FIELDS = ("tokenizer_type", "tokenizer_model", "vocab_file", "merge_file")


def export(path: str, out: str, tokenizer: dict | None = None) -> dict:
    """Write checkpoint iteration directory ``path`` as a HF model directory ``out``: model.safetensors,
    config.json and the files of ``tokenizer`` (the tokenizer flags' fields, TOKENIZER_FIELDS, of any
    type; data/tokenizer.py's save_tokenizer writes them as transformers' AutoTokenizer loads them).
    Returns the architecture. Everything is checked before anything is written."""
    from types import SimpleNamespace

    from safetensors.torch import save_file

    from megatron_grow import checkpointing
    from megatron_grow.data.tokenizer import build_tokenizer, save_tokenizer

    common = checkpointing.read_common(path)
    problems = export_problems(common)
    if problems:
        raise ConversionError(f"cannot export {path}: " + "; ".join(problems))
    arch = common["architecture"]
    fields = None
    if tokenizer:
        fields = SimpleNamespace(**{**dict.fromkeys(TOKENIZER_FIELDS), **tokenizer, "vocab_size": arch["vocab_size"]})
        try:
            tok = build_tokenizer(fields)
        except (OSError, ValueError) as e:
            raise ConversionError(f"the tokenizer: {e}") from None
        if tok.vocab_size > arch["vocab_size"]:
            raise ConversionError(f"the tokenizer ({tok!r}) has {tok.vocab_size} tokens, the model "
                                  f"{arch['vocab_size']}")
    config = hf_config(arch)
    config.architectures = [HF_CLASS[arch["family"]]]
    if common["config"].get("bf16"):  # the bf16 weights the run computed with (its fp32 masters stay behind)
        config.dtype = "bfloat16"
    sd = read_weights(path)
    if arch["family"] == "deepseek-v3" and not arch["moe_router_enable_expert_bias"]:  # HF's router always has one
        sd.update({f"{key[:-len('weight')]}expert_bias": sd[key].new_zeros(arch["num_experts"])
                   for key in list(sd) if key.endswith("mlp.router.weight")})
    weights = to_hf(sd, arch)
    os.makedirs(out, exist_ok=True)
    if fields is not None and save_tokenizer(fields, out):
        from transformers import AutoTokenizer

        written = AutoTokenizer.from_pretrained(out)  # (its ids as transformers reads the files)
        config.bos_token_id, config.eos_token_id = written.bos_token_id, written.eos_token_id
    save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    config.save_pretrained(out)
    return arch


# ---- import: a HF model directory into a checkpoint -------------------------------------------------

def flags_from_hf(c) -> tuple[list[str], list[str]]:
    """(trainer flags, problems) for transformers config ``c``: the shapes, the norm epsilon and the RoPE
    base and scaling become flags, and every constant our family fixes must be the HF model's."""
    kind = getattr(c, "model_type", None)
    if kind not in ("llama", "gpt2", "deepseek_v3"):
        return [], [f"model_type {kind!r}: only llama (-> llama3), gpt2 and deepseek_v3 (-> deepseek-v3) are imported"]
    family = {"llama": "llama3", "deepseek_v3": "deepseek-v3"}.get(kind, kind)
    P, rope = [], []
    if kind != "gpt2":
        rope, P = _rope_flags(c, scaling=kind == "llama")
    extra = []  # (problems after the fixed constants')
    if kind == "deepseek_v3":
        checks, flags, extra = _deepseek_v3_flags(c)
    elif kind == "llama":
        checks = [("hidden_act", c.hidden_act, "silu"), ("attention_bias", c.attention_bias, False),
                  ("mlp_bias", c.mlp_bias, False)]
        flags = ["--model", "llama3", "--num-layers", c.num_hidden_layers, "--hidden-size", c.hidden_size,
                 "--ffn-hidden-size", c.intermediate_size, "--num-attention-heads", c.num_attention_heads,
                 "--num-query-groups", c.num_key_value_heads, "--kv-channels", c.head_dim,
                 "--vocab-size", c.vocab_size, "--max-position-embeddings", c.max_position_embeddings,
                 "--norm-epsilon", c.rms_norm_eps]
    else:
        checks = [("activation_function", c.activation_function, "gelu_new")]
        flags = ["--model", "gpt2", "--num-layers", c.n_layer, "--hidden-size", c.n_embd,
                 "--ffn-hidden-size", c.n_inner or 4 * c.n_embd, "--num-attention-heads", c.n_head,
                 "--vocab-size", c.vocab_size, "--max-position-embeddings", c.n_positions,
                 "--norm-epsilon", c.layer_norm_epsilon]
    P += [f"{what} {got!r}: {family} here has {want!r}" for what, got, want in checks if got != want] + extra
    tie = ("--no-" if c.tie_word_embeddings else "--") + "untie-embeddings-and-output-weights"
    return [_flag_text(x) for x in flags + rope] + [tie], P


def _flag_text(x) -> str:
    """A flag's value as the command line takes it (500000.0 -> 500000)."""
    return str(int(x)) if isinstance(x, float) and x.is_integer() and abs(x) < 1e15 else str(x)


def _rope_flags(c, scaling: bool) -> tuple[list, list[str]]:
    """(--rotary-base and, with ``scaling``, LLaMA-3.1's RoPE scaling flags; problems) of HF config ``c``:
    what megatron-core's RotaryEmbedding cannot apply is refused naming the field."""
    from megatron_grow.models.llama3 import ROPE_SCALING

    rope = dict(getattr(c, "rope_parameters", None) or {})
    theta = rope.get("rope_theta", getattr(c, "rope_theta", None))
    kind = rope.get("rope_type", "default")
    flags = ["--rotary-base", theta]
    if kind == "default":
        return flags, []
    if not scaling or kind != "llama3":
        what = "plain RoPE or LLaMA-3.1's scaling (rope_type 'llama3')" if scaling else "plain RoPE"
        return flags, [f"rope_parameters.rope_type {kind!r}: megatron-core applies {what} here"]
    P = [f"rope_parameters.{k} {rope.get(k)!r}: megatron-core's LLaMA-3.1 RoPE scaling fixes it at {v!r}"
         for k, v in ROPE_SCALING.items() if rope.get(k) != v]
    return flags + ["--use-rope-scaling", "--rope-scaling-factor", float(rope["factor"])], P


def _deepseek_v3_flags(c) -> tuple[list[tuple], list, list[str]]:
    """(fixed constants as (field, HF's, ours), trainer flags, other problems) of a HF DeepseekV3 config."""
    k, groups, group_topk = c.num_experts_per_tok, c.n_group or 1, c.topk_group or 1
    checks = [("hidden_act", c.hidden_act, "silu"),
              ("attention_bias", c.attention_bias, False), ("rope_interleave", c.rope_interleave, True),
              ("norm_topk_prob", c.norm_topk_prob, k > 1)]
    P = []
    if groups > 1 and k // group_topk != 2:
        P.append(f"n_group {groups} with num_experts_per_tok {k} / topk_group {group_topk} != 2: megatron-core ranks "
                 f"groups by their top (topk / group-topk) scores, HF by their top 2")
    if not c.n_shared_experts:
        P.append("n_shared_experts 0: deepseek-v3 here has a shared expert")
    flags = ["--model", "deepseek-v3", "--num-layers", c.num_hidden_layers, "--hidden-size", c.hidden_size,
             "--ffn-hidden-size", c.intermediate_size, "--num-attention-heads", c.num_attention_heads,
             "--vocab-size", c.vocab_size, "--max-position-embeddings", c.max_position_embeddings,
             "--q-lora-rank", c.q_lora_rank or 0, "--kv-lora-rank", c.kv_lora_rank,
             "--qk-head-dim", c.qk_nope_head_dim, "--qk-pos-emb-head-dim", c.qk_rope_head_dim,
             "--v-head-dim", c.v_head_dim, "--num-experts", c.n_routed_experts, "--moe-router-topk", k,
             "--moe-ffn-hidden-size", c.moe_intermediate_size,
             "--moe-shared-expert-intermediate-size", c.moe_intermediate_size * (c.n_shared_experts or 0),
             "--moe-first-dense-layers", c.first_k_dense_replace, "--moe-layer-freq", 1,
             "--moe-router-score-function", "sigmoid", "--moe-router-enable-expert-bias",
             "--moe-router-topk-scaling-factor", c.routed_scaling_factor,
             "--moe-router-num-groups", groups, "--moe-router-group-topk", group_topk, "--norm-epsilon", c.rms_norm_eps]
    return checks, flags, P


def read_hf(directory: str) -> tuple[object, dict[str, torch.Tensor]]:
    """(config, weights) of a HF model directory (config.json and *.safetensors)."""
    import glob

    from safetensors.torch import load_file
    from transformers import AutoConfig

    files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if not files:
        raise ConversionError("no *.safetensors there (save the model with safe_serialization)")
    weights = {}
    for f in files:
        weights.update(load_file(f))
    return AutoConfig.from_pretrained(directory), weights


def load_into(model, weights: dict[str, torch.Tensor]) -> None:
    """Copy full tensors keyed like a checkpoint into this process's model (TP1/PP1): the model's own
    sharded state dict names each parameter's checkpoint key."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    from megatron_grow.checkpointing import model_sharded_state_dict

    pieces = []  # each ShardedTensor's data is a view of a parameter (a factory's, of a part of one)
    for v in model_sharded_state_dict(model).values():
        if isinstance(v, ShardedTensorFactory):
            pieces += nested_values(v.build())
        elif isinstance(v, ShardedTensor):
            pieces.append(v)
    left = set(weights)
    with torch.no_grad():
        for v in pieces:
            if "_extra_state" in v.key:
                continue
            if v.key not in weights:
                raise ConversionError(f"the HF model has no weight for {v.key}")
            v.data.copy_(weights[v.key][v.global_slice()].to(v.data.dtype))
            left.discard(v.key)
    if left:
        raise ConversionError(f"HF weights with no place in the model: {sorted(left)[:5]}")
