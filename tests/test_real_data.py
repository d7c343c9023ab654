"""The models' own tokenizers end to end (issue 28): a tiny LLaMA3 with LLaMA-3's real 128,256-token tokenizer
and a tiny GPT2 with GPT-2's real vocab/merges, each on text preprocessed into two prefixes, trained on a
weighted blend of the two, then exported to HuggingFace with that tokenizer: transformers' AutoTokenizer of
the export encodes text as the preprocessed .bin holds it, and the exported model scores that text below the
loss of the first step (it learned from it)."""

import json
import math

import numpy
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDataset

from conftest import TINY, read_metrics, tokenizer_files

TEXTS = {  # two sources for the blend: prose with Unicode, and code with whitespace runs
    "prose": ["Growth trains a shallow model first, then deepens it — “vollständig” 深度 🙂 {}.",
              "The held-out set stays held out; ratios are sampling weights ({} of them)."],
    "code": ["def f(x):\n    return x ** {}  # squared\n\n\n", "for i in range({}):\n\tprint(i,   'tabs\\t')\n"],
}


def tokenizer_flags(family: str) -> list[str]:
    files = tokenizer_files()
    if family == "llama3":
        return ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", files["llama3"]]
    return ["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", files["gpt2_vocab"],
            "--merge-file", files["gpt2_merges"]]


@pytest.mark.parametrize("family,vocab", [("llama3", 128256), ("gpt2", 50257)])
def test_trains_on_its_own_tokenizer_with_a_blend_and_exports_it(tmp_path, family, vocab):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from megatron_grow import train
    from tools import export_hf
    from tools.preprocess_data import main as preprocess

    tok = tokenizer_flags(family)
    prefixes = {}
    for name, lines in TEXTS.items():
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": lines[i % 2].format(i) * 6}) + "\n" for i in range(60)))
        prefixes[name] = str(tmp_path / name)
        preprocess(["--input", str(tmp_path / f"{name}.jsonl"), "--output-prefix", prefixes[name], *tok])
    metrics, ckpt, out = tmp_path / "m.jsonl", tmp_path / "ckpt", tmp_path / "hf"
    r = train.main(["--model", family, *TINY, "--num-layers", "1", *tok,
                    "--data-path", "0.3", prefixes["prose"], "0.7", prefixes["code"],
                    "--micro-batch-size", "2", "--global-batch-size", "2", "--train-iters", "4",
                    "--lr-warmup-iters", "1", "--eval-interval", "4", "--eval-iters", "1",
                    "--save", str(ckpt), "--metrics-file", str(metrics)])
    assert r.cfg.vocab_size == vocab
    recs = read_metrics(metrics)
    loss = [x["lm_loss"] for x in recs if "lm_loss" in x]
    assert len(loss) == 4 and all(math.isfinite(v) for v in loss)
    assert abs(loss[0] - math.log(vocab)) < 1.0  # (a fresh model over the whole real vocabulary)

    export_hf.main(["--load", str(ckpt), "--out", str(out)])
    hf_tok = AutoTokenizer.from_pretrained(out)
    doc = TEXTS["code"][0].format(0) * 6
    ids = hf_tok(doc, add_special_tokens=False).input_ids
    code = IndexedDataset(prefixes["code"])  # (kept: megatron-core unmaps the file when the object goes)
    stored = code[0].tolist()  # the first document as preprocessed, EOD last
    assert stored == ids + [hf_tok.eos_token_id], (stored[:20], ids[:20])
    assert hf_tok.decode(ids) == doc

    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    assert model.config.vocab_size >= vocab and model.config.eos_token_id == hf_tok.eos_token_id
    seq = numpy.asarray(stored[:33], dtype=numpy.int64)
    with torch.no_grad():
        logits = model(torch.from_numpy(seq[None, :-1])).logits[0, :, :vocab]
    nll = torch.nn.functional.cross_entropy(logits, torch.from_numpy(seq[1:]))
    assert math.isfinite(nll.item()) and nll.item() < loss[0]  # trained on it: below the first step's loss
