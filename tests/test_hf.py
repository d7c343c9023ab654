"""HuggingFace export: a trained checkpoint of any layout as transformers' own model classes."""

import sys

import pytest
import torch

from conftest import ROOT, cfg_for, run, torchrun

SHAPE = ["--preset", "tiny", "--hidden-size", "64", "--num-attention-heads", "4", "--ffn-hidden-size", "128",
         "--seq-length", "32", "--num-layers", "2", "--data-path", "demo", "--micro-batch-size", "2",
         "--global-batch-size", "4", "--lr", "1e-2", "--lr-warmup-iters", "1", "--eval-iters", "1",
         "--train-iters", "3", "--no-progress"]
FAMILIES = {"llama3": ["--model", "llama3", "--num-query-groups", "2"], "gpt2": ["--model", "gpt2"],
            "deepseek-v3": ["--model", "deepseek-v3"]}  # (its tiny preset's MLA and 8 experts, top-2 of 2 groups)
LAYOUT = {"llama3": ["--tensor-model-parallel-size", "2"], "gpt2": ["--tensor-model-parallel-size", "2"],
          "deepseek-v3": ["--expert-model-parallel-size", "2"]}
HF_CLASS = {"llama3": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel", "deepseek-v3": "DeepseekV3ForCausalLM"}


@pytest.mark.parametrize("family", FAMILIES)
def test_export_gives_the_trainers_logits_from_any_layout(tmp_path, family):
    """Trained at TP2 (DeepSeekV3: EP2, experts split), exported by tools/export_hf.py: transformers' model
    gives the trainer's logits (within 1e-5) and its tokenizer the trainer's token ids on real text; the
    same run trained in one process exports the same tensors (up to the runs' float differences, 1e-3
    of each tensor's scale; a wrongly ordered QKV, gate/up or expert would differ by its whole scale)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from megatron_grow import hf
    from megatron_grow.data.corpus import demo_corpus
    from megatron_grow.data.tokenizer import Tokenizer

    args = [*FAMILIES[family], *SHAPE]
    tp2, tp1, out = tmp_path / "tp2", tmp_path / "tp1", tmp_path / "hf"
    torchrun(2, [*args, *LAYOUT[family], "--save", str(tp2)])
    torchrun(1, [*args, "--save", str(tp1)])
    ref = tmp_path / "ref.pt"
    torchrun(1, ["--out", str(ref), *args, "--load", str(tp2)], module="tools.dump_logits")
    res = run([sys.executable, "tools/export_hf.py", "--load", str(tp2), "--out", str(out)])
    assert f"({family}, 2 layers)" in res.stdout

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(model).__name__ == HF_CLASS[family]
    tokens = torch.randint(0, model.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(tokens).logits
    want = torch.load(ref)
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()

    ours, theirs = Tokenizer(demo_corpus()[1]), AutoTokenizer.from_pretrained(out)
    text = open(f"{ROOT}/README.md", encoding="utf-8").read()[:20000]
    assert theirs.encode(text, add_special_tokens=False) == ours.tokenize(text)
    assert theirs.decode(ours.tokenize(text)) == ours.detokenize(ours.tokenize(text))
    assert theirs.eos_token_id == ours.eod == model.config.eos_token_id

    hf.export(str(tp1 / "iter_0000003"), str(tmp_path / "hf1"), None)
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "hf1" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert ((a[k] - b[k]).abs().max() <= 1e-3 * b[k].abs().max()), k


def test_export_refuses_what_it_cannot_write(tmp_path):
    """--out existing, an unknown --ckpt-step, an architecture HF's class cannot express (a DeepSeekV3 with
    a softmax router), a damaged shard: one message each, nothing written."""
    ck = tmp_path / "ck"
    moe = ["--model", "deepseek-v3", "--preset", "tiny", "--hidden-size", "64", "--num-layers", "1", "--mock-data",
           "--vocab-size", "1000", "--seq-length", "32", "--micro-batch-size", "2", "--global-batch-size", "2",
           "--train-iters", "1", "--eval-iters", "1", "--no-progress", "--moe-ffn-hidden-size", "32",
           "--moe-shared-expert-intermediate-size", "32", "--q-lora-rank", "32", "--kv-lora-rank", "32",
           "--qk-head-dim", "16", "--qk-pos-emb-head-dim", "8", "--v-head-dim", "16", "--ffn-hidden-size", "128"]
    torchrun(1, [*moe, "--moe-router-score-function", "softmax", "--no-moe-router-enable-expert-bias",
                 "--save", str(ck)])

    tool = _tool("export_hf")

    def export(*extra):  # the tool's main in this process: its message is the exit code
        with pytest.raises(SystemExit) as e:
            tool.main(["--load", str(ck), *map(str, extra)])
        return str(e.value.code)

    (tmp_path / "taken").mkdir()
    assert "--out" in export("--out", tmp_path / "taken") and "exists" in export("--out", tmp_path / "taken")
    assert "--ckpt-step 7: no complete checkpoint" in export("--out", tmp_path / "a", "--ckpt-step", "7")
    assert "HF's DeepseekV3 router scores with a sigmoid" in export("--out", tmp_path / "b")
    shard = next((ck / "iter_0000001").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:100])
    assert "is damaged" in export("--out", tmp_path / "c")
    sums = ck / "iter_0000001" / "checksums.0.json"
    sums.write_text("{not json")  # an unreadable checksum file: named, not a raw JSONDecodeError
    assert f"{sums} is unreadable" in export("--out", tmp_path / "d")
    sums.unlink()
    common = ck / "iter_0000001" / "common.pt"  # (no checksums left: the truncated file fails its read, named)
    common.write_bytes(common.read_bytes()[:100])
    assert f"{common}: RuntimeError" in export("--out", tmp_path / "e")
    assert not any((tmp_path / n).exists() for n in "abcde")


def _tool(name: str):
    """tools/NAME.py as a module, to run its main in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, f"{ROOT}/tools/{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _random_hf_model(family: str, directory):
    """A tiny transformers model with random weights (nothing downloaded), saved as safetensors."""
    from transformers import (
        DeepseekV3Config,
        DeepseekV3ForCausalLM,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    if family == "deepseek-v3":  # 1 dense + 1 MoE layer, 8 experts in 2 groups, top-2 from 1 group, 2 shared
        model = DeepseekV3ForCausalLM(DeepseekV3Config(
            vocab_size=1000, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, n_shared_experts=2, n_routed_experts=8, kv_lora_rank=32,
            q_lora_rank=32, qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, n_group=2, topk_group=1,
            num_experts_per_tok=2, first_k_dense_replace=1, max_position_embeddings=64,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}))
    elif family == "llama3":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=64,
            tie_word_embeddings=False))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=64))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():  # larger than HF's init, so every weight shows in the logits
            norm_scale = p.dim() == 1 and not name.endswith("bias")
            p.copy_((1 if norm_scale else 0) + 0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():  # DeepSeekV3's router bias (a buffer)
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
    model.save_pretrained(directory)
    return model.eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_import_gives_the_hf_models_logits_and_grows(tmp_path, family):
    """tools/import_hf.py: a random tiny HF model becomes a checkpoint whose logits, read at TP2, are the
    HF model's (within 1e-5); it then grows 2 -> 4 layers (copy_zeroL, interleaved, as LLaMA-Pro) and,
    exported back, the deeper HF model gives the source's logits."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from megatron_grow import hf

    src = _random_hf_model(family, tmp_path / "src")
    flags, problems = hf.flags_from_hf(AutoConfig.from_pretrained(tmp_path / "src"))
    assert not problems
    ck = tmp_path / "ck"
    res = run([sys.executable, "tools/import_hf.py", "--hf", str(tmp_path / "src"), "--save", str(ck)])
    assert "(iteration 0)" in res.stdout
    tokens = torch.randint(0, 1000, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = src(tokens).logits
    ref = tmp_path / "ref.pt"
    torchrun(2, ["--out", str(ref), *flags, "--mock-data", "--seq-length", "32", "--load", str(ck),
                 "--tensor-model-parallel-size", "2"], module="tools.dump_logits")
    got = torch.load(ref)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()
    grown, out = tmp_path / "grown", tmp_path / "hf_grown"
    run([sys.executable, "tools/expand_checkpoint.py", "--load", str(ck), "--save", str(grown),
         "--target-num-layers", "4", "--placement", "interleave", "--init", "copy_zeroL"])
    run([sys.executable, "tools/export_hf.py", "--load", str(grown), "--out", str(out), "--no-tokenizer"])
    deep = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert deep.config.num_hidden_layers == 4 and type(deep).__name__ == HF_CLASS[family]
    with torch.no_grad():
        got = deep(tokens).logits
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()


def test_import_refuses_what_differs():
    """A HF model whose fixed constants are not the family's, or whose RoPE megatron-core cannot apply, is
    refused, naming each field."""
    from transformers import DeepseekV3Config, GPT2Config, LlamaConfig

    from megatron_grow import hf

    scaling = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 2.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 4096}
    _, problems = hf.flags_from_hf(LlamaConfig(hidden_act="gelu", rope_parameters=scaling,
                                               max_position_embeddings=16384))
    assert problems == ["rope_parameters.low_freq_factor 2.0: megatron-core's LLaMA-3.1 RoPE scaling fixes it at 1.0",
                        "rope_parameters.original_max_position_embeddings 4096: megatron-core's LLaMA-3.1 RoPE "
                        "scaling fixes it at 8192", "hidden_act 'gelu': llama3 here has 'silu'"], problems
    _, problems = hf.flags_from_hf(LlamaConfig(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}))
    assert problems == ["rope_parameters.rope_type 'yarn': megatron-core applies plain RoPE or LLaMA-3.1's scaling "
                        "(rope_type 'llama3') here"], problems
    # (the values megatron-core 0.16's RotaryEmbedding applies, whatever it is given)
    import inspect

    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    from megatron_grow.models.llama3 import ROPE_SCALING

    fixed = inspect.signature(RotaryEmbedding._apply_scaling).parameters
    assert all(fixed[k].default == v for k, v in ROPE_SCALING.items())
    _, problems = hf.flags_from_hf(GPT2Config(activation_function="gelu"))
    assert problems == ["activation_function 'gelu': gpt2 here has 'gelu_new'"]
    assert hf.flags_from_hf(type("C", (), {"model_type": "mistral"})())[1][0].startswith("model_type 'mistral'")
    _, problems = hf.flags_from_hf(DeepseekV3Config(rope_interleave=False, num_experts_per_tok=4, n_shared_experts=0,
                                                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}))
    assert problems == ["rope_interleave False: deepseek-v3 here has True",
                        "n_group 8 with num_experts_per_tok 4 / topk_group 4 != 2: megatron-core ranks groups by "
                        "their top (topk / group-topk) scores, HF by their top 2",
                        "n_shared_experts 0: deepseek-v3 here has a shared expert"], problems


@pytest.mark.parametrize("family", FAMILIES)
def test_conversion_round_trips(tmp_path, family):
    """A random HF model's files (the Hub format: DeepSeekV3's experts one by one), converted to our
    checkpoint's tensors (architecture from the flags import gives) and back, are the same tensors."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from megatron_grow import config, hf
    from megatron_grow.finalize import finalize
    from megatron_grow.models import architecture

    _random_hf_model(family, tmp_path)
    theirs = load_file(tmp_path / "model.safetensors")
    flags, problems = hf.flags_from_hf(AutoConfig.from_pretrained(tmp_path))
    assert not problems
    arch = architecture(finalize(config.parse_args([*flags, "--mock-data", "--seq-length", "32"]), 1, "cpu"))
    ours = hf.from_hf(theirs, arch)
    assert ours["embedding.word_embeddings.weight"].shape[0] == 1024  # (padded; the padding rows are zero)
    back = hf.to_hf(ours, arch)
    assert back.keys() == theirs.keys() and all(torch.equal(back[k], theirs[k]) for k in theirs)


def test_export_refuses_what_hf_cannot_express():
    """A DeepSeekV3 run whose router or layer pattern HF's class has no setting for is refused, naming the flag."""
    from megatron_grow import hf
    from megatron_grow.models import architecture

    cfg = cfg_for("deepseek-v3", moe_layer_freq=2, moe_router_num_groups=2, moe_router_group_topk=2,
                  moe_shared_expert_intermediate_size=0)
    problems = hf.export_problems({"architecture": architecture(cfg), "config": {}})
    assert len(problems) == 3, problems
    assert "--moe-layer-freq 2" in problems[0] and "(--moe-router-topk 2 / --moe-router-group-topk 2)" in problems[1]
    assert problems[2].startswith("--moe-shared-expert-intermediate-size 0")
    assert not hf.export_problems({"architecture": architecture(cfg_for("deepseek-v3", preset="small")), "config": {}})


ROPE_3_1 = {"rope_type": "llama3", "rope_theta": 500000.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
LLAMAS = {  # transformers' LlamaConfig fields of each shape beyond the tiny sizes; our flags beyond import's
    "llama-2": (dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-6,
                     num_key_value_heads=4, tie_word_embeddings=False), ["--apply-layernorm-1p"]),
    "llama-3.1": (dict(rope_parameters={**ROPE_3_1, "factor": 8.0}, rms_norm_eps=1e-5, num_key_value_heads=2,
                       tie_word_embeddings=False), []),
    "llama-3.2": (dict(rope_parameters={**ROPE_3_1, "factor": 32.0}, rms_norm_eps=1e-5, num_key_value_heads=2,
                       tie_word_embeddings=True), []),
}


def _random_llama(shape: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, max_position_embeddings=16384, **LLAMAS[shape][0]))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():  # (norm scales around 1, so that 1 + gamma shows)
            p.copy_((1 if p.dim() == 1 else 0) + 0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.mark.parametrize("shape", LLAMAS)
def test_every_llama_gives_transformers_logits(world, shape):
    """A random tiny Llama-2-shaped (RoPE base 10000, eps 1e-6, MHA; imported here into an --apply-layernorm-1p
    model: norm scales stored as gamma - 1), Llama-3.1-shaped (llama3 RoPE scaling, factor 8) and Llama-3.2-shaped
    (factor 32, tied embeddings) model: imported with the flags flags_from_hf gives, our model's logits on 256
    tokens equal transformers' within 1e-5; exported back (hf_config + to_hf), transformers' model of our
    config gives them too and its config holds the RoPE base, eps and scaling. Without the scaling our
    logits differ (the sequence is long enough for the low frequencies to matter)."""
    import dataclasses

    from transformers import LlamaForCausalLM

    from megatron_grow import config, hf
    from megatron_grow.finalize import finalize
    from megatron_grow.models import architecture, build_model

    src = _random_llama(shape)
    flags, problems = hf.flags_from_hf(src.config)
    assert not problems, problems
    cfg = finalize(config.parse_args([*flags, *LLAMAS[shape][1], "--mock-data", "--seq-length", "256",
                                      "--device", "cpu"]), 1, "cpu")
    theirs = {k: v.clone() for k, v in src.state_dict().items() if not (k == "lm_head.weight" and
                                                                      src.config.tie_word_embeddings)}
    ours = hf.from_hf(theirs, architecture(cfg))
    tokens = torch.randint(0, 300, (1, 256), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(256).unsqueeze(0)

    def logits(c):
        model = build_model(c, 1, 1, torch.device("cpu")).eval()
        hf.load_into(model, ours)
        with torch.no_grad():
            return model(tokens, positions, None)[..., :300]

    with torch.no_grad():
        want = src(tokens).logits
    got = logits(cfg)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()

    arch = architecture(cfg)
    back = LlamaForCausalLM(hf.hf_config(arch)).eval()
    back.load_state_dict(hf.to_hf(ours, arch), strict=False)  # (a tied head has no weight of its own)
    assert back.config.rope_parameters == src.config.rope_parameters
    assert back.config.rms_norm_eps == src.config.rms_norm_eps
    assert back.config.tie_word_embeddings == src.config.tie_word_embeddings
    with torch.no_grad():
        again = back(tokens).logits
    assert torch.allclose(again, want, rtol=1e-5, atol=1e-5), (again - want).abs().max()
    if cfg.use_rope_scaling:
        plain = logits(dataclasses.replace(cfg, use_rope_scaling=False))
        assert (plain - want).abs().max() > 1e-3
    else:  # --apply-layernorm-1p: stored as gamma - 1, the same function
        assert cfg.apply_layernorm_1p and torch.allclose(ours["decoder.final_layernorm.weight"] + 1,
                                                         theirs["model.norm.weight"])


def test_layernorm_1p_is_the_same_function_at_init(world):
    """--apply-layernorm-1p stores each norm scale as gamma with scale 1 + gamma: its init (gamma 0) computes
    what the plain model's (scale 1) does, bit for bit."""
    from megatron_grow.models import build_model

    tokens = torch.randint(0, 1000, (2, 32), generator=torch.Generator().manual_seed(0))
    out = {}
    for one_p in (False, True):
        cfg = cfg_for("llama3", vocab_size=1000, seq_length=32, **({"apply_layernorm_1p": True} if one_p else {}))
        model = build_model(cfg, 1, 1, torch.device("cpu")).eval()
        norms = [p for n, p in model.named_parameters() if "norm" in n]
        assert norms and all(torch.all(p == (0 if one_p else 1)) for p in norms)
        with torch.no_grad():
            out[one_p] = model(tokens, torch.arange(32).expand_as(tokens), None)
    assert torch.equal(out[False], out[True])


def test_import_carries_the_tokenizer_through_training_and_export(tmp_path):
    """A Llama-3.2-shaped HF model with its own tokenizer.json (a real byte-level BPE, trained here with the
    tokenizers library): tools/import_hf.py copies the tokenizer into CKPT/tokenizer; a run with --load CKPT
    and data preprocessed with that tokenizer trains with no tokenizer flag; tools/export_hf.py of the run
    writes the tokenizer (AutoTokenizer gives our ids, its EOS is the model config's) and the RoPE scaling."""
    import json
    from types import SimpleNamespace

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from megatron_grow import checkpointing, config
    from megatron_grow.data import resolve_data_flags
    from megatron_grow.data.corpus import documents
    from megatron_grow.data.preprocess import encode_to_indexed
    from megatron_grow.data.tokenizer import build_tokenizer

    docs = list(documents(max_chars=150_000))
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer, tk.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tk.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|end_of_text|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    src = tmp_path / "src"
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|end_of_text|>").save_pretrained(src)
    ours = build_tokenizer(SimpleNamespace(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(src),
                                           vocab_file=None, merge_file=None, vocab_size=None))
    LlamaForCausalLM(LlamaConfig(vocab_size=ours.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                 num_attention_heads=4, max_position_embeddings=16384,
                                 **LLAMAS["llama-3.2"][0])).save_pretrained(src)
    data = tmp_path / "data"
    encode_to_indexed(docs, ours, str(data))

    ck, out = tmp_path / "ck", tmp_path / "hf"
    problems = []
    _tool("import_hf").carried_tokenizer(str(src), 300, problems)
    assert problems == [f"its tokenizer has {ours.vocab_size} tokens, the model's vocab_size is 300"], problems
    res = run([sys.executable, "tools/import_hf.py", "--hf", f"{src}/", "--save", str(ck)])
    assert "its tokenizer (HuggingFaceTokenizer) is in" in res.stdout and (ck / "tokenizer" / "tokenizer.json").exists()
    flags = res.stdout.split("train it with: ")[1].split(" --optimizer")[0].split()
    assert "--use-rope-scaling" in flags and flags[flags.index("--rope-scaling-factor") + 1] == "32"
    for given, want in [([], str(ck / "tokenizer")), (["--tokenizer-model", f"{src}/tokenizer.json"],
                                                     f"{src}/tokenizer.json")]:  # (a tokenizer flag given wins)
        cfg = config.parse_args([*flags, "--load", str(ck), "--data-path", str(data), *given])
        resolve_data_flags(cfg)
        assert (cfg.tokenizer_type, cfg.tokenizer_model) == ("HuggingFaceTokenizer", want)
    torchrun(1, [*flags, "--load", str(ck), "--save", str(tmp_path / "run"), "--data-path", str(data),
                 "--seq-length", "32", "--micro-batch-size", "2", "--global-batch-size", "2", "--train-iters", "2",
                 "--eval-iters", "1", "--lr-warmup-iters", "0", "--no-progress"])
    saved = checkpointing.read_common(str(tmp_path / "run" / "iter_0000002"))["config"]
    assert saved["tokenizer_model"] == str(ck / "tokenizer") and saved["tokenizer_type"] == "HuggingFaceTokenizer"
    _tool("export_hf").main(["--load", str(tmp_path / "run"), "--out", str(out)])  # (in this process: no torch start)
    theirs, text = AutoTokenizer.from_pretrained(out), "\n".join(docs[:3]) + " \u00e9t\u00e9 \U0001f600  x"
    assert theirs.encode(text, add_special_tokens=False) == ours.tokenize(text)
    assert theirs.eos_token_id == ours.eod == AutoConfig.from_pretrained(out).eos_token_id
    rope = json.loads((out / "config.json").read_text())["rope_parameters"]
    assert rope == {**ROPE_3_1, "factor": 32.0}, rope


def test_resume_with_other_rope_or_norm_constants_is_refused():
    """The RoPE and norm flags define the function the weights compute: a resume with other values than the
    checkpoint's is refused naming them (a checkpoint from before they were flags is not)."""
    from megatron_grow import checkpointing

    cfg = cfg_for("llama3", rotary_base=10000, use_rope_scaling=True)
    saved = {"rotary_base": 500000.0, "use_rope_scaling": False, "norm_epsilon": 1e-5, "apply_layernorm_1p": False}
    with pytest.raises(checkpointing.CheckpointError) as e:
        checkpointing.shape_problems(cfg, {"config": saved}, 5)
    assert "saved with --rotary-base 500000.0, --use-rope-scaling False; this run has --rotary-base 10000.0, " \
           "--use-rope-scaling True" in str(e.value), str(e.value)
    checkpointing.shape_problems(cfg_for("llama3"), {"config": saved}, 5)
    checkpointing.shape_problems(cfg, {"config": {}}, 5)
