"""Preprocessing throughput: tools/preprocess_data.py here against Megatron-LM's, side by side in one run.

    python benchmarks/preprocess_throughput.py --megatron-lm /tmp/megatron-lm

The same input (the bundled demo corpus's demo.jsonl), the same real tokenizers (GPT-2's vocab/merges and
LLaMA-3's tokenizer.json, fetched by tools/fetch_test_tokenizers.py), --workers 1 and 2, EOD appended by both.
Each command is timed whole (a fresh process: imports, tokenizer load, pool start, reading, encoding,
writing); the start-up (the same command on a one-document file) is measured too and subtracted for the
"after start-up" rates. Megatron-LM reads GPT-2's files through its HuggingFaceTokenizer on the directory
save_tokenizer writes (its GPT2BPETokenizer asks the HF hub for "gpt2" even with local files). The outputs
are compared byte for byte (Megatron-LM's PREFIX_text_document.bin/.idx against ours).

Megatron-LM's newest tools/preprocess_data.py does not run against megatron-core 0.16.1 (it imports
megatron.core.tokenizers.utils, which 0.16.1 has under megatron.core.tokenizers.text.utils); it runs with the
checkout's own megatron/core first on PYTHONPATH, and, on Python < 3.12, a sitecustomize that gives
typing.override (its megatron/training/models imports it; 3.12 has it). Without --megatron-lm only ours runs.
Results: benchmarks/results/preprocess_throughput.json / .md.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, ROOT, write  # noqa: E402

SHIM = "import typing\nif not hasattr(typing, 'override'):\n    typing.override = lambda f: f\n"


def timed(cmd: list[str], env: dict | None = None, timeout: float = 1800) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{(res.stderr or res.stdout)[-2000:]}")
    return wall, res.stdout + res.stderr


def megatron_env(mlm: str, tmp: str) -> tuple[dict, list[str]]:
    """The environment Megatron-LM's tool runs in, and why it needed more than the installed megatron-core."""
    env, notes = dict(os.environ), []
    probe = [sys.executable, "-c", "import megatron.core.tokenizers.utils.build_tokenizer"]
    if subprocess.run(probe, capture_output=True, env=env).returncode:
        notes.append("megatron-core 0.16.1 has no megatron.core.tokenizers.utils (the newest tool imports "
                     "build_tokenizer from there; 0.16.1 has megatron.core.tokenizers.text.utils): the checkout's "
                     "own megatron/core is put first on PYTHONPATH")
        paths = [mlm]
        if sys.version_info < (3, 12):
            shim = os.path.join(tmp, "shim")
            os.makedirs(shim, exist_ok=True)
            with open(os.path.join(shim, "sitecustomize.py"), "w") as f:
                f.write(SHIM)
            paths.insert(0, shim)
            notes.append(f"Python {platform.python_version()} has no typing.override, which the checkout's "
                         "megatron/training/models imports: a sitecustomize adds it (an identity decorator)")
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env, notes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megatron-lm", help="a Megatron-LM checkout (its tools/preprocess_data.py); none: only ours")
    ap.add_argument("--input", help="a .jsonl (default: the demo corpus's demo.jsonl)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tokenizers", nargs="+", default=["gpt2", "llama3"], choices=["gpt2", "llama3"])
    ap.add_argument("--repeats", type=int, default=2, help="runs of each command; the fastest counts (default 2)")
    ap.add_argument("--out", default=os.path.join(RESULTS, "preprocess_throughput"))
    args = ap.parse_args(argv)
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from megatron_grow.data.corpus import demo_corpus
    from megatron_grow.data.tokenizer import save_tokenizer
    from tools.fetch_test_tokenizers import fetch

    files = fetch()
    data = args.input or demo_corpus()[0] + ".jsonl"
    tmp = tempfile.mkdtemp(prefix="preprocess_bench_")
    with open(data, encoding="utf-8") as f:
        first = f.readline()
    one = os.path.join(tmp, "one.jsonl")
    with open(one, "w", encoding="utf-8") as f:
        f.write(first)
    gpt2_dir = os.path.join(tmp, "gpt2_hf")
    save_tokenizer(argparse.Namespace(tokenizer_type="GPT2BPETokenizer", tokenizer_model=None, vocab_size=None,
                                      vocab_file=files["gpt2_vocab"], merge_file=files["gpt2_merges"]), gpt2_dir)
    ours_flags = {"gpt2": ["--vocab-file", files["gpt2_vocab"], "--merge-file", files["gpt2_merges"]],
                  "llama3": ["--tokenizer-model", files["llama3"]]}
    theirs_flags = {"gpt2": ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", gpt2_dir],
                    "llama3": ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", files["llama3"]]}
    env, notes = megatron_env(args.megatron_lm, tmp) if args.megatron_lm else (None, [])

    def measure(fn, tok, prefix, w):
        """(fastest whole run, fastest start-up) of ``repeats`` pairs: the command on one document, then on all
        (the pairs side by side, so that both see the same load)."""
        full, start = [], []
        for _ in range(args.repeats):
            for p in (prefix, prefix + "_start"):
                for ext in (".bin", ".idx", "_text_document.bin", "_text_document.idx"):
                    if os.path.exists(p + ext):
                        os.remove(p + ext)  # (our own scratch outputs, so that the tool writes them again)
            start.append(fn(tok, one, prefix + "_start", w))
            full.append(fn(tok, data, prefix, w))
        return min(full), min(start)

    def ours(tok, inp, prefix, w):
        return timed([sys.executable, "tools/preprocess_data.py", "--input", inp, "--output-prefix", prefix,
                      "--workers", str(w), *ours_flags[tok]])[0]

    def theirs(tok, inp, prefix, w):
        return timed([sys.executable, os.path.join(args.megatron_lm, "tools", "preprocess_data.py"), "--input", inp,
                      "--output-prefix", prefix, "--workers", str(w), "--append-eod", *theirs_flags[tok]], env)[0]

    tools = {"megatron-grow": ours} | ({"Megatron-LM": theirs} if args.megatron_lm else {})
    rows = []
    for tok in args.tokenizers:
        for w in args.workers:
            out = {}
            for name, fn in tools.items():  # side by side: each configuration runs both tools in turn
                prefix = os.path.join(tmp, f"{name}_{tok}_w{w}")
                wall, startup = measure(fn, tok, prefix, w)
                out[name] = prefix if name == "megatron-grow" else prefix + "_text_document"
                ds = IndexedDataset(out[name])
                docs, tokens = len(ds), int(ds.sequence_lengths.sum())
                after = wall - startup if wall - startup > 0.1 * wall else None  # (else: noise)
                rows.append({"tool": name, "tokenizer": tok, "workers": w, "documents": docs, "tokens": tokens,
                             "seconds": round(wall, 2), "startup_seconds": round(startup, 2),
                             "docs_per_s": round(docs / wall, 1), "tokens_per_s": round(tokens / wall),
                             "docs_per_s_after_startup": round(docs / after, 1) if after else None,
                             "tokens_per_s_after_startup": round(tokens / after) if after else None})
                print(json.dumps(rows[-1]), flush=True)
            if len(out) == 2:
                same = all(filecmp.cmp(out["megatron-grow"] + e, out["Megatron-LM"] + e, shallow=False)
                           for e in (".bin", ".idx"))
                for r in rows[-2:]:
                    r["identical_output"] = same
    shutil.rmtree(tmp)
    for r in rows:  # the speed-up of more workers, per tool and tokenizer (whole command)
        one_worker = [x for x in rows if (x["tool"], x["tokenizer"], x["workers"]) == (r["tool"], r["tokenizer"], 1)]
        r["speedup_vs_1_worker"] = round(one_worker[0]["seconds"] / r["seconds"], 2) if one_worker else None
    meta = {"input": data, "cpus": os.cpu_count(), "python": platform.python_version(),
            "megatron_lm": args.megatron_lm, "megatron_lm_notes": notes,
            "load": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    md = ["# Preprocessing throughput", "",
          f"tools/preprocess_data.py here and Megatron-LM's on the same input ({os.path.basename(data)}, "
          f"{rows[0]['documents']} documents), the same tokenizers, EOD appended; {os.cpu_count()} CPUs, "
          f"load average {meta['load']:.1f} at the end (other jobs shared the CPUs). Whole command (a fresh "
          f"process, the fastest of {args.repeats}) and after its start-up (the same command on one document, run "
          f"before each; the fastest of {args.repeats}).", "",
          "| tokenizer | workers | tool | tokens | s | docs/s | tokens/s | x 1 worker | start-up s | docs/s after "
          "start-up | tokens/s after start-up | same .bin/.idx |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        after = r["tokens_per_s_after_startup"]
        md.append(f"| {r['tokenizer']} | {r['workers']} | {r['tool']} | {r['tokens']:,} | {r['seconds']:.1f} | "
                  f"{r['docs_per_s']:.0f} | {r['tokens_per_s']:,} | {r['speedup_vs_1_worker'] or '-'} | "
                  f"{r['startup_seconds']:.1f} | "
                  f"{r['docs_per_s_after_startup'] or '-'} | {f'{after:,}' if after else '-'} | "
                  f"{'yes' if r.get('identical_output') else ('no' if 'identical_output' in r else '-')} |")
    if notes:
        md += ["", "Megatron-LM's tool ran with: " + "; ".join(notes) + "."]
    write(args.out, {"meta": meta, "runs": rows}, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
