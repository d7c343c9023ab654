"""HuggingFace export: a trained checkpoint of any layout as transformers' own model classes."""

import sys

import pytest
import torch

from conftest import ROOT, cfg_for, run, torchrun

SHAPE = ["--preset", "tiny", "--hidden-size", "64", "--num-attention-heads", "4", "--ffn-hidden-size", "128",
         "--seq-length", "32", "--num-layers", "2", "--data-path", "demo", "--micro-batch-size", "2",
         "--global-batch-size", "4", "--lr", "1e-2", "--lr-warmup-iters", "1", "--eval-iters", "1",
         "--train-iters", "3", "--no-progress"]
FAMILIES = {"llama3": ["--model", "llama3", "--num-query-groups", "2"], "gpt2": ["--model", "gpt2"]}


@pytest.mark.parametrize("family", FAMILIES)
def test_export_gives_the_trainers_logits_from_any_layout(tmp_path, family):
    """Trained at TP2, exported by tools/export_hf.py: transformers' model gives the trainer's logits
    (within 1e-5) and its tokenizer the trainer's token ids on real text; the same run trained at TP1
    exports the same tensors (up to the runs' float differences, 1e-3 of each tensor's scale; a wrongly
    ordered QKV or gate/up would differ by its whole scale)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from megatron_grow import hf
    from megatron_grow.data.corpus import demo_corpus
    from megatron_grow.data.tokenizer import Tokenizer

    args = [*FAMILIES[family], *SHAPE]
    tp2, tp1, out = tmp_path / "tp2", tmp_path / "tp1", tmp_path / "hf"
    torchrun(2, [*args, "--tensor-model-parallel-size", "2", "--save", str(tp2)])
    torchrun(1, [*args, "--save", str(tp1)])
    ref = tmp_path / "ref.pt"
    torchrun(1, ["--out", str(ref), *args, "--load", str(tp2)], module="tools.dump_logits")
    res = run([sys.executable, "tools/export_hf.py", "--load", str(tp2), "--out", str(out)])
    assert f"({family}, 2 layers)" in res.stdout

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(model).__name__ == {"llama3": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}[family]
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
    """--out existing, an unknown --ckpt-step, a family without export, a damaged shard: one message each,
    nothing written."""
    ck = tmp_path / "ck"
    moe = ["--model", "deepseek-v3", "--preset", "tiny", "--hidden-size", "64", "--num-layers", "1", "--mock-data",
           "--vocab-size", "1000", "--seq-length", "32", "--micro-batch-size", "2", "--global-batch-size", "2",
           "--train-iters", "1", "--eval-iters", "1", "--no-progress", "--moe-ffn-hidden-size", "32",
           "--moe-shared-expert-intermediate-size", "32", "--q-lora-rank", "32", "--kv-lora-rank", "32",
           "--qk-head-dim", "16", "--qk-pos-emb-head-dim", "8", "--v-head-dim", "16", "--ffn-hidden-size", "128"]
    torchrun(1, [*moe, "--save", str(ck)])

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
    assert "the deepseek-v3 family has no export yet" in export("--out", tmp_path / "b")
    shard = next((ck / "iter_0000001").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:100])
    assert "is damaged" in export("--out", tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in "abc")


def _random_hf_model(family: str, directory):
    """A tiny transformers model with random weights (nothing downloaded), saved as safetensors."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if family == "llama3":
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
    model.save_pretrained(directory)
    return model.eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_import_gives_the_hf_models_logits_and_grows(tmp_path, family):
    """tools/import_hf.py: a random tiny HF model becomes a checkpoint whose logits, read at TP2, are the
    HF model's (within 1e-5); LLaMA3 then grows 2 -> 4 layers (copy_zeroL, interleaved, as LLaMA-Pro)
    and, exported back, the deeper HF model gives the source's logits."""
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
    if family != "llama3":
        return
    grown, out = tmp_path / "grown", tmp_path / "hf_grown"
    run([sys.executable, "tools/expand_checkpoint.py", "--load", str(ck), "--save", str(grown),
         "--target-num-layers", "4", "--placement", "interleave", "--init", "copy_zeroL"])
    run([sys.executable, "tools/export_hf.py", "--load", str(grown), "--out", str(out), "--no-tokenizer"])
    deep = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert deep.config.num_hidden_layers == 4
    with torch.no_grad():
        assert torch.allclose(deep(tokens).logits, want, rtol=1e-5, atol=1e-5)


def test_import_refuses_what_differs():
    """A HF model whose fixed constants are not the family's is refused, naming each field."""
    from transformers import GPT2Config, LlamaConfig

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


@pytest.mark.parametrize("family", FAMILIES)
def test_conversion_round_trips(family):
    """to_hf then from_hf gives back every tensor of a 2-layer model with distinct random values
    (the vocabulary padding, which export drops, comes back as zeros)."""
    from megatron_grow import hf
    from megatron_grow.models import architecture

    cfg = cfg_for(family, num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=128, vocab_size=1000,
                  **({"num_query_groups": 2} if family == "llama3" else {}))
    arch = architecture(cfg)
    gen = torch.Generator().manual_seed(0)
    qkv_rows = (arch["num_attention_heads"] + 2 * arch["num_query_groups"]) * arch["kv_channels"]
    shapes = {"embedding.word_embeddings.weight": (1024, 64), "embedding.position_embeddings.weight": (128, 64),
              "output_layer.weight": (1024, 64), "linear_qkv.weight": (qkv_rows, 64), "linear_qkv.bias": (qkv_rows,),
              "linear_proj.weight": (64, 64), "linear_fc1.weight": (256 if family == "llama3" else 128, 64),
              "linear_fc1.bias": (128,), "linear_fc2.weight": (64, 128)}
    names = [ours for ours, _, _ in hf._pairs(arch)]
    sd = {n: torch.randn(next((v for k, v in shapes.items() if n.endswith(k)), (64,)), generator=gen) for n in names}
    for n in ("embedding.word_embeddings.weight", "output_layer.weight"):
        if n in sd:
            sd[n][1000:] = 0
    back = hf.from_hf(hf.to_hf(sd, arch), arch)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
