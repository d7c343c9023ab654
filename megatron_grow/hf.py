"""HuggingFace transformers <-> our checkpoints: the names and layouts of each family's weights.

A checkpoint holds every weight as one global tensor (ShardedTensors keyed per layer), so it reads
without a process group into full tensors, whatever TP/PP/EP layout saved it. Two layouts differ from
HF's: the fused QKV projection is grouped per KV group ([q heads of group g; k_g; v_g] for each g), and
the gated MLP's first projection is [gate; up]. GPT-2's HF modules are Conv1D (weights transposed).
"""

from __future__ import annotations

import os
import warnings

import torch

SUPPORTED = ("llama3", "gpt2")


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


# How one of our tensors becomes HF's (export) and back (import). HF's side is one tensor, or a list.
CONVERSIONS = {
    None: (lambda w, a: w, lambda w, a: w),
    "vocab": (lambda w, a: w[:a["vocab_size"]], _pad_vocab),  # drop / add the padding rows
    "t": (lambda w, a: w.t(), lambda w, a: w.t()),  # GPT-2's Conv1D holds [in, out]
    "qkv": (_qkv_split, lambda qkv, a: _qkv_join(*qkv, a)),
    "gate_up": (lambda w, a: [t.clone() for t in w.chunk(2)], lambda gu, a: torch.cat(gu)),
    "qkv_fused": (lambda w, a: torch.cat(_qkv_split(w, a)), lambda w, a: _qkv_join(*w.chunk(3), a)),  # GPT-2
    "qkv_fused_t": (lambda w, a: torch.cat(_qkv_split(w, a)).t(), lambda w, a: _qkv_join(*w.t().chunk(3), a)),
}


def _pairs(arch: dict) -> list[tuple[str, str | list[str], str | None]]:
    """(our checkpoint key, HF key or keys, conversion) for every weight of ``arch``."""
    n = arch["num_layers"]
    if arch["family"] == "llama3":
        top = [("embedding.word_embeddings.weight", "model.embed_tokens.weight", "vocab"),
               ("decoder.final_layernorm.weight", "model.norm.weight", None)]
        if not arch["tied_embeddings"]:
            top.append(("output_layer.weight", "lm_head.weight", "vocab"))
        ours, theirs = "decoder.layers.{}.", "model.layers.{}."
        layer = [("self_attention.linear_qkv.layer_norm_weight", "input_layernorm.weight", None),
                 ("self_attention.linear_qkv.weight", ["self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                                       "self_attn.v_proj.weight"], "qkv"),
                 ("self_attention.linear_proj.weight", "self_attn.o_proj.weight", None),
                 ("mlp.linear_fc1.layer_norm_weight", "post_attention_layernorm.weight", None),
                 ("mlp.linear_fc1.weight", ["mlp.gate_proj.weight", "mlp.up_proj.weight"], "gate_up"),
                 ("mlp.linear_fc2.weight", "mlp.down_proj.weight", None)]
    else:
        top = [("embedding.word_embeddings.weight", "transformer.wte.weight", "vocab"),
               ("embedding.position_embeddings.weight", "transformer.wpe.weight", None),
               ("decoder.final_layernorm.weight", "transformer.ln_f.weight", None),
               ("decoder.final_layernorm.bias", "transformer.ln_f.bias", None)]
        ours, theirs = "decoder.layers.{}.", "transformer.h.{}."
        layer = [("self_attention.linear_qkv.layer_norm_weight", "ln_1.weight", None),
                 ("self_attention.linear_qkv.layer_norm_bias", "ln_1.bias", None),
                 ("self_attention.linear_qkv.weight", "attn.c_attn.weight", "qkv_fused_t"),
                 ("self_attention.linear_qkv.bias", "attn.c_attn.bias", "qkv_fused"),
                 ("self_attention.linear_proj.weight", "attn.c_proj.weight", "t"),
                 ("self_attention.linear_proj.bias", "attn.c_proj.bias", None),
                 ("mlp.linear_fc1.layer_norm_weight", "ln_2.weight", None),
                 ("mlp.linear_fc1.layer_norm_bias", "ln_2.bias", None),
                 ("mlp.linear_fc1.weight", "mlp.c_fc.weight", "t"), ("mlp.linear_fc1.bias", "mlp.c_fc.bias", None),
                 ("mlp.linear_fc2.weight", "mlp.c_proj.weight", "t"), ("mlp.linear_fc2.bias", "mlp.c_proj.bias", None)]

    def at(i, name):
        return [theirs.format(i) + x for x in name] if isinstance(name, list) else theirs.format(i) + name

    return top + [(ours.format(i) + o, at(i, t), how) for i in range(n) for o, t, how in layer]


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
    from transformers import GPT2Config, LlamaConfig

    common = dict(vocab_size=arch["vocab_size"], tie_word_embeddings=arch["tied_embeddings"],
                  dtype="float32", bos_token_id=None, eos_token_id=None)
    if arch["family"] == "llama3":
        return LlamaConfig(
            hidden_size=arch["hidden_size"], intermediate_size=arch["ffn_hidden_size"],
            num_hidden_layers=arch["num_layers"], num_attention_heads=arch["num_attention_heads"],
            num_key_value_heads=arch["num_query_groups"], head_dim=arch["kv_channels"], hidden_act=arch["activation"],
            rms_norm_eps=arch["norm_epsilon"], rope_theta=float(arch["rotary_base"]),
            max_position_embeddings=arch["max_position_embeddings"], attention_bias=False, mlp_bias=False, **common)
    return GPT2Config(
        n_embd=arch["hidden_size"], n_inner=arch["ffn_hidden_size"], n_layer=arch["num_layers"],
        n_head=arch["num_attention_heads"], n_positions=arch["max_position_embeddings"],
        activation_function={"gelu_tanh": "gelu_new", "gelu": "gelu"}[arch["activation"]],
        layer_norm_epsilon=arch["norm_epsilon"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)


def hf_tokenizer(model_path: str):
    """Our SentencePiece BPE ``.model`` (data/tokenizer.py trains them) as a transformers fast tokenizer
    that gives the same ids: the pieces and merges in a byte-fallback BPE, spaces as U+2581 with one
    prepended, as SentencePiece does with its identity normalizer."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    proto = sentencepiece_model_pb2.ModelProto()
    with open(model_path, "rb") as f:
        proto.ParseFromString(f.read())
    norm, trainer = proto.normalizer_spec, proto.trainer_spec
    unlike = [what for what, bad in [
        ("not a BPE model", trainer.model_type != trainer.BPE), ("no byte fallback", not trainer.byte_fallback),
        (f"normalizer {norm.name!r}, not 'identity'", norm.name != "identity"),
        ("extra whitespace removed", norm.remove_extra_whitespaces), ("no dummy prefix", not norm.add_dummy_prefix),
        ("pieces across whitespace", not trainer.split_by_whitespace)] if bad]
    if unlike:
        raise ConversionError(f"tokenizer {model_path}: no HF conversion for this kind of SentencePiece model "
                          f"({', '.join(unlike)}); export without it (--no-tokenizer) and convert it yourself")
    sp = spm.SentencePieceProcessor(model_file=model_path)
    pieces = SentencePieceExtractor(model_path).extract(models.BPE)
    unk = sp.id_to_piece(sp.unk_id())
    tk = Tokenizer(models.BPE(vocab=pieces["vocab"], merges=pieces["merges"], unk_token=unk, byte_fallback=True,
                              fuse_unk=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    special = {name: sp.id_to_piece(i) for name, i in
               [("bos_token", sp.bos_id()), ("eos_token", sp.eos_id()), ("unk_token", sp.unk_id()),
                ("pad_token", sp.pad_id())] if i >= 0}
    return PreTrainedTokenizerFast(tokenizer_object=tk, **special)


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
    if arch["rotary_percent"] != 1.0 or arch["rotary_interleaved"] or arch["softmax_scale"] is not None:
        P.append("its RoPE or attention scale is not the HF class's")
    if arch["family"] == "gpt2" and arch["num_query_groups"] != arch["num_attention_heads"]:
        P.append("GPT-2 in HF has no grouped-query attention")
    return P


def export(path: str, out: str, tokenizer_model: str | None = None) -> dict:
    """Write checkpoint iteration directory ``path`` as a HF model directory ``out``: model.safetensors,
    config.json and, from SentencePiece ``tokenizer_model``, the tokenizer files. Returns the architecture.
    Everything is checked before anything is written."""
    from safetensors.torch import save_file

    from megatron_grow import checkpointing

    common = checkpointing.read_common(path)
    problems = export_problems(common)
    if problems:
        raise ConversionError(f"cannot export {path}: " + "; ".join(problems))
    arch = common["architecture"]
    tok = hf_tokenizer(tokenizer_model) if tokenizer_model else None
    if tok is not None and len(tok) > arch["vocab_size"]:
        raise ConversionError(f"tokenizer {tokenizer_model} has {len(tok)} tokens, the model {arch['vocab_size']}")
    config = hf_config(arch)
    config.architectures = [{"llama3": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}[arch["family"]]]
    weights = to_hf(read_weights(path), arch)
    os.makedirs(out, exist_ok=True)
    if tok is not None:
        tok.save_pretrained(out)
        config.bos_token_id, config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    config.save_pretrained(out)
    return arch


# ---- import: a HF model directory into a checkpoint -------------------------------------------------

def flags_from_hf(c) -> tuple[list[str], list[str]]:
    """(trainer flags, problems) for transformers config ``c``: the shapes become flags, and every
    constant our family fixes must be the HF model's."""
    from megatron_grow.models import FAMILIES

    kind = getattr(c, "model_type", None)
    if kind not in ("llama", "gpt2"):
        return [], [f"model_type {kind!r}: only llama (-> llama3) and gpt2 are imported"]
    P = []
    if kind == "llama":
        fam = FAMILIES["llama3"]
        rope = (getattr(c, "rope_parameters", None) or {})
        theta = rope.get("rope_theta", getattr(c, "rope_theta", None))
        if rope.get("rope_type", "default") != "default":
            P.append(f"RoPE scaling {rope.get('rope_type')!r}: ours is plain RoPE (rope_type 'default')")
        if theta != fam["rotary_base"]:
            P.append(f"rope_theta {theta}: llama3 here uses {fam['rotary_base']}")
        for what, got, want in [("rms_norm_eps", c.rms_norm_eps, fam["norm_epsilon"]),
                                ("hidden_act", c.hidden_act, "silu"), ("attention_bias", c.attention_bias, False),
                                ("mlp_bias", c.mlp_bias, False)]:
            if got != want:
                P.append(f"{what} {got!r}: llama3 here has {want!r}")
        flags = ["--model", "llama3", "--num-layers", c.num_hidden_layers, "--hidden-size", c.hidden_size,
                 "--ffn-hidden-size", c.intermediate_size, "--num-attention-heads", c.num_attention_heads,
                 "--num-query-groups", c.num_key_value_heads, "--kv-channels", c.head_dim,
                 "--vocab-size", c.vocab_size, "--max-position-embeddings", c.max_position_embeddings]
    else:
        fam = FAMILIES["gpt2"]
        for what, got, want in [("layer_norm_epsilon", c.layer_norm_epsilon, fam["norm_epsilon"]),
                                ("activation_function", c.activation_function, "gelu_new")]:
            if got != want:
                P.append(f"{what} {got!r}: gpt2 here has {want!r}")
        flags = ["--model", "gpt2", "--num-layers", c.n_layer, "--hidden-size", c.n_embd,
                 "--ffn-hidden-size", c.n_inner or 4 * c.n_embd, "--num-attention-heads", c.n_head,
                 "--vocab-size", c.vocab_size, "--max-position-embeddings", c.n_positions]
    tie = ("--no-" if c.tie_word_embeddings else "--") + "untie-embeddings-and-output-weights"
    return [str(x) for x in flags] + [tie], P


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
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    from megatron_grow.checkpointing import model_sharded_state_dict

    sd = model_sharded_state_dict(model)
    left = set(weights)
    with torch.no_grad():
        for v in sd.values():
            if isinstance(v, (ShardedTensor, ShardedTensorFactory)) and "_extra_state" not in v.key:
                if v.key not in weights:
                    raise ConversionError(f"the HF model has no weight for {v.key}")
                v.data.copy_(weights[v.key].to(v.data.dtype).reshape(v.data.shape))
                left.discard(v.key)
    if left:
        raise ConversionError(f"HF weights with no place in the model: {sorted(left)[:5]}")
