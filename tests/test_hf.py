"""HuggingFace export: a trained checkpoint of any layout as transformers' own model classes."""

import sys

import pytest
import torch

from conftest import ROOT, run, torchrun

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

    def export(*extra):
        res = run([sys.executable, "tools/export_hf.py", "--load", str(ck), *map(str, extra)], check=False)
        assert res.returncode != 0
        return res.stdout

    (tmp_path / "taken").mkdir()
    assert "--out" in export("--out", tmp_path / "taken") and "exists" in export("--out", tmp_path / "taken")
    assert "--ckpt-step 7: no complete checkpoint" in export("--out", tmp_path / "a", "--ckpt-step", "7")
    assert "the deepseek-v3 family has no export yet" in export("--out", tmp_path / "b")
    shard = next((ck / "iter_0000001").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:100])
    assert "is damaged" in export("--out", tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in "abc")
