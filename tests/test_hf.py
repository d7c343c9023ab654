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

    import importlib.util

    spec = importlib.util.spec_from_file_location("export_hf", f"{ROOT}/tools/export_hf.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

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
    """A HF model whose fixed constants are not the family's is refused, naming each field."""
    from transformers import DeepseekV3Config, GPT2Config, LlamaConfig

    from megatron_grow import hf

    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    _, problems = hf.flags_from_hf(LlamaConfig(rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="gelu",
                                               rope_scaling=scaling))
    assert any("RoPE scaling 'llama3'" in p for p in problems), problems
    assert any("rms_norm_eps 1e-06" in p for p in problems) and any("rope_theta 10000" in p for p in problems)
    assert any("hidden_act 'gelu'" in p for p in problems)
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
