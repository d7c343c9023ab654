"""Training throughput on this CPU: the trainer against a bare PyTorch loop and the matmul peak.

    python benchmarks/throughput.py [--families gpt2,llama3 --widths 64,128,256,512]  # ~12 min, 2 idle cores
    python benchmarks/throughput.py --quick --widths 64 --families llama3 --out DIR/throughput  # CI, ~1 min
    python benchmarks/throughput.py --micro-batch-size 16 --widths 256,512 --nprocs 1 --out DIR/mbs16  # larger matmuls
    python benchmarks/throughput.py --profile --families llama3 --widths 256 [--precisions bf16]

One invocation measures, with one thread per process (OMP_NUM_THREADS=1):

1. the matmul peak of one thread, fp32 and bf16: square matmuls of 1024, 2048 and 4096, the best of
   a few repetitions of each, the best size's GFLOP/s;
2. a bare PyTorch loop written here (nanoGPT-style, no megatron) of the same model as the trainer's
   run: GPT2 (LayerNorm with bias, learned positions, fused QKV with bias, the tanh GeLU of the gpt2
   family, tied embeddings) or LLaMA3 (RMSNorm, RoPE, grouped-query attention, SwiGLU, no bias,
   untied head), torch SDPA (causal), the same init rule, the trainer's default AdamW (lr 3e-3,
   betas 0.9 / 0.95, eps 1e-8, weight decay 0.1 on 2-D weights but biases, global-norm clipping at
   1.0) at a constant LR; fp32 plain, bf16 nanoGPT's way (fp32 parameters under
   ``torch.autocast("cpu", torch.bfloat16)``); 2 processes: torch DDP on gloo under torchrun. Its
   parameter count is checked against megatron_grow.flops.param_count of the trainer's config;
3. the trainer itself (``python -m megatron_grow.train`` under torchrun through benchmarks/launch.py,
   mock data, --preset tiny with the sizes below): fp32 (--no-bf16) and bf16 (--bf16: megatron's bf16
   parameters, fp32 master weights and gradient reduction).

Each (family, width, precision, processes) row runs both loops on the same shapes: 4 layers, seq
256, micro-batch 4 per process (global batch 4 x processes, one micro-batch per step), vocab 8192;
width W with head dim 64 (32 at width 64), FFN 4W (gpt2) or 3W (llama3: its tiny preset's ratio),
llama3 with two query heads per KV group (the tiny preset's). (The vocab is small on purpose: with 4
layers a 32000 vocab makes the LM head 56-89% of the matmul FLOPs at widths 512-64, a 7B model's is
under 10%, and the rows would measure the head and its cross-entropy; --vocab-size changes it.) The
first iterations are warm-up; a row's tokens/s is the global batch's tokens over the median step
time of the rest (the trainer's metrics ``step_time_s``: its training step, data included; the bare
loop's whole iteration). FLOP/s count the exact matmul FLOPs of megatron_grow.flops.ledger for both
loops; the fraction of peak is against the one-thread peak of the row's precision x processes. The
bare loop runs just before the trainer for each row, so both meet the same background load; the
cores may be shared, so compare ratios rather than absolute numbers. Targets (issue 24), per row at
width >= 256: trainer >= 0.9 x the bare loop; bf16 >= 2 x fp32 (the trainer's).

``--profile`` instead runs both loops of the first family and width in this process (one process,
one thread) and breaks an iteration down: the trainer's phases (timed by wrappers around the
functions its loop calls), the same with megatron_grow.platform's CPU TorchFunctionMode (which
every torch call goes through) replaced by wrappers around torch's tensor factories, the bare
loop's phases; wall, CPU and system time and page faults per iteration (the median of a few rounds:
CPU time holds up best on shared cores); and the top host-side functions (cProfile, own time) and
torch ops (torch.profiler, self CPU time) of each.

Results: benchmarks/results/throughput.json / .md (``--out`` STEM: STEM.json / .md; the profile
STEM_profile.json / .md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, run_worker, train, write  # noqa: E402

# the run's shapes: layers, sequence, micro-batch per process, vocab, warm-up and timed iterations by width
FULL = dict(layers=4, seq=256, mbs=4, vocab=8192, warmup=2, iters={64: 12, 128: 10, 256: 10, 512: 8},
            matmul=(1024, 2048, 4096))
QUICK = dict(layers=2, seq=64, mbs=2, vocab=16384, warmup=1, iters={64: 9}, matmul=(256, 512))
TARGET_RATIO, TARGET_BF16, TARGET_WIDTH = 0.9, 2.0, 256


# ---- the bare loop (no megatron) -----------------------------------------------------------------
def bare_model(spec: dict):
    """The trainer's model in plain PyTorch, [batch, seq] tokens -> [batch, seq, vocab] logits."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    h, nh, ng, hd = spec["hidden"], spec["heads"], spec["groups"], spec["head_dim"]
    norm = (lambda: nn.LayerNorm(h, eps=spec["eps"])) if spec["norm"] == "LayerNorm" else \
        (lambda: nn.RMSNorm(h, eps=spec["eps"]))
    act = {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}[spec["activation"]]
    bias, gated, rope = spec["bias"], spec["gated"], spec["positions"] == "rope"

    def rotate(x, cos, sin):  # RoPE, halves rotated (megatron's non-interleaved layout)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = norm(), norm()
            self.qkv = nn.Linear(h, (nh + 2 * ng) * hd, bias=bias)
            self.proj = nn.Linear(nh * hd, h, bias=bias)
            self.fc1 = nn.Linear(h, spec["ffn"] * (2 if gated else 1), bias=bias)
            self.fc2 = nn.Linear(spec["ffn"], h, bias=bias)

        def forward(self, x, cos, sin):
            b, s, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split([nh * hd, ng * hd, ng * hd], dim=-1)
            q, k, v = (t.view(b, s, -1, hd).transpose(1, 2) for t in (q, k, v))
            if rope:
                q, k = rotate(q, cos.to(q.dtype), sin.to(q.dtype)), rotate(k, cos.to(k.dtype), sin.to(k.dtype))
            if ng != nh:  # grouped-query attention: each KV head serves nh / ng query heads
                k, v = k.repeat_interleave(nh // ng, dim=1), v.repeat_interleave(nh // ng, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, s, nh * hd))
            u = self.fc1(self.ln2(x))
            if gated:
                gate, up = u.chunk(2, dim=-1)
                u = act(gate) * up
            else:
                u = act(u)
            return x + self.fc2(u)

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(spec["vocab"], h)
            self.wpe = None if rope else nn.Embedding(spec["seq"], h)
            self.blocks = nn.ModuleList(Block() for _ in range(spec["layers"]))
            self.ln_f = norm()
            self.head = nn.Linear(h, spec["vocab"], bias=False)
            if spec["tied"]:
                self.head.weight = self.wte.weight
            inv = 1.0 / spec["rotary_base"] ** (torch.arange(0, hd, 2).float() / hd) if rope else torch.zeros(1)
            angles = torch.outer(torch.arange(spec["seq"]).float(), inv)
            self.register_buffer("cos", torch.cat((angles, angles), dim=-1).cos(), persistent=False)
            self.register_buffer("sin", torch.cat((angles, angles), dim=-1).sin(), persistent=False)
            std, out_std = spec["init_std"], spec["init_std"] / math.sqrt(2 * spec["layers"])
            for name, p in self.named_parameters():  # the trainer's rule (megatron_grow/models/init.py)
                if p.ndim == 2:
                    nn.init.normal_(p, 0.0, out_std if name.endswith(("proj.weight", "fc2.weight")) else std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

        def forward(self, tokens):
            x = self.wte(tokens)
            if self.wpe is not None:
                x = x + self.wpe.weight[: tokens.shape[1]]
            for block in self.blocks:
                x = block(x, self.cos, self.sin)
            return self.head(self.ln_f(x))

    return GPT()


class Timers:
    """Seconds per named phase, summed over the calls (``with timers("forward"): ...``)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, label: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0

    def wrap(self, obj, attr: str, label: str):
        """Time every call of ``obj.attr`` as ``label``; returns a function that restores it."""
        fn = getattr(obj, attr)

        def timed(*a, **kw):
            with self(label):
                return fn(*a, **kw)

        setattr(obj, attr, timed)
        return lambda: setattr(obj, attr, fn)


class Bare:
    """The bare loop: model (DDP when the world is larger than one), AdamW, mock-like batches."""

    def __init__(self, spec: dict, bf16: bool, seed: int = 1234):
        import torch
        import torch.distributed as dist

        torch.manual_seed(seed)
        self.spec, self.bf16 = spec, bf16
        self.module = bare_model(spec)
        params = sum(p.numel() for p in self.module.parameters())
        assert params == spec["params"], f"bare model: {params} parameters, the trainer's {spec['params']}"
        world = dist.get_world_size() if dist.is_initialized() else 1
        self.model = torch.nn.parallel.DistributedDataParallel(self.module) if world > 1 else self.module
        named = list(self.module.named_parameters())
        decay = [p for n, p in named if p.ndim >= 2 and not n.endswith("bias")]  # (the trainer's _no_decay)
        rest = [p for n, p in named if not (p.ndim >= 2 and not n.endswith("bias"))]
        o = spec["optimizer"]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                                      {"params": rest, "weight_decay": 0.0}],
                                     lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
        rank = dist.get_rank() if dist.is_initialized() else 0
        self.gen = torch.Generator().manual_seed(seed + rank)

    def batch(self):
        """Runs of consecutive token ids from a random start below 4096, like megatron's mock documents
        (1, 2, 3, ... up to a length below 4096)."""
        import torch

        s, v = self.spec["seq"], self.spec["vocab"]
        start = torch.randint(1, min(v, 4096), (self.spec["mbs"], 1), generator=self.gen)
        seq = (start + torch.arange(s + 1)) % v
        return seq[:, :-1], seq[:, 1:]

    def step(self, t=None) -> float:
        """One iteration (phases timed by ``t``, a Timers); returns the loss."""
        import torch
        import torch.nn.functional as F

        t = t or Timers()
        with t("data"):
            x, y = self.batch()
        with t("forward"), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        with t("backward"):
            loss.backward()
        with t("clip grad"):
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.spec["optimizer"]["clip_grad"])
        with t("optimizer step"):
            self.opt.step()
        with t("zero grad"):
            self.opt.zero_grad(set_to_none=True)
        return loss.item()


def bare_worker(args) -> None:
    """torchrun worker: the bare loop of ``--spec`` in each precision; rank 0 writes step times and losses."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    spec, out = json.loads(args.spec), {}
    for precision in spec["precisions"]:
        bare = Bare(spec, precision == "bf16")
        times, losses = [], []
        for _ in range(spec["warmup"] + spec["iters"]):
            t0 = time.perf_counter()
            losses.append(bare.step())
            times.append(time.perf_counter() - t0)
        out[precision] = {"step_time_s": times, "lm_loss": losses}
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()


# ---- the trainer's run and the bare loop's spec, from the same flags ---------------------------------
def timed_iters(sizes: dict, width: int) -> int:
    return sizes["iters"].get(width, min(sizes["iters"].values()))  # (widths not listed: the fewest)


def trainer_flags(family: str, width: int, sizes: dict, nproc: int, bf16: bool) -> list[str]:
    """The trainer's flags for one row: --preset tiny's family at ``width`` (head dim 64, 32 at width 64;
    the tiny preset's FFN ratio and heads per KV group)."""
    from megatron_grow.models import preset

    tiny = preset(family, "tiny")
    heads = max(2, width // 64)
    groups = ["--num-query-groups", str(heads * tiny["num_query_groups"] // tiny["num_attention_heads"])] \
        if "num_query_groups" in tiny else []
    iters = timed_iters(sizes, width)
    return ["--model", family, "--preset", "tiny", "--mock-data", "--device", "cpu",
            "--num-layers", str(sizes["layers"]), "--hidden-size", str(width),
            "--ffn-hidden-size", str(width * tiny["ffn_hidden_size"] // tiny["hidden_size"]),
            "--num-attention-heads", str(heads), *groups, "--seq-length", str(sizes["seq"]),
            "--vocab-size", str(sizes["vocab"]), "--micro-batch-size", str(sizes["mbs"]),
            "--global-batch-size", str(sizes["mbs"] * nproc), "--train-iters", str(sizes["warmup"] + iters),
            "--log-interval", "1", "--eval-interval", "100000", "--eval-iters", "1",
            "--bf16" if bf16 else "--no-bf16"]


def finalized(flags: list[str], nproc: int):
    from megatron_grow import config
    from megatron_grow.finalize import finalize

    return finalize(config.parse_args(flags), nproc, "cpu")


def bare_spec(cfg) -> dict:
    """Everything the bare loop needs of the trainer's finalized config (shapes, init, optimizer)."""
    from megatron_grow.flops import param_count
    from megatron_grow.models import FAMILIES, padded_vocab_size, tied_embeddings

    fam = FAMILIES[cfg.model]
    return {"layers": cfg.num_layers, "hidden": cfg.hidden_size, "ffn": cfg.ffn_hidden_size,
            "heads": cfg.num_attention_heads, "groups": cfg.num_query_groups,
            "head_dim": cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads,
            "vocab": padded_vocab_size(cfg.vocab_size), "seq": cfg.seq_length, "mbs": cfg.micro_batch_size,
            "norm": fam["normalization"], "eps": fam["norm_epsilon"], "activation": fam["activation"],
            "gated": fam["gated_linear_unit"], "bias": fam["add_bias_linear"],
            "positions": fam["position_embedding_type"], "rotary_base": fam.get("rotary_base"),
            "tied": tied_embeddings(cfg), "init_std": cfg.init_method_std, "params": param_count(cfg),
            "optimizer": {"lr": cfg.lr, "betas": [cfg.adam_beta1, cfg.adam_beta2], "eps": cfg.adam_eps,
                          "weight_decay": cfg.weight_decay, "clip_grad": cfg.clip_grad}}


# ---- measurements --------------------------------------------------------------------------------
def matmul_peak(sizes, reps: int = 3) -> dict:
    """GFLOP/s of one thread's square matmuls per dtype: the best of ``reps`` at each size, and the best size."""
    import torch

    torch.set_num_threads(1)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        by_size = {}
        for n in sizes:
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            a @ b  # (first call: kernel selection)
            best = math.inf
            for _ in range(reps):
                t0 = time.perf_counter()
                a @ b
                best = min(best, time.perf_counter() - t0)
            by_size[n] = 2 * n**3 / best / 1e9
        out[name] = max(by_size.values())
        out[name + "_by_size"] = by_size
    return out


def steady(times: list[float], warmup: int) -> float:
    """The median step time after the warm-up iterations."""
    return statistics.median(times[warmup:] or times)


def measure(family: str, width: int, nproc: int, sizes: dict, precisions: list[str], work: str,
            timeout: float) -> list[dict]:
    """The rows of one (family, width, processes): the bare loop (one torchrun job, every precision),
    then the trainer once per precision."""
    flags = {p: trainer_flags(family, width, sizes, nproc, p == "bf16") for p in precisions}
    cfg = finalized(flags[precisions[0]], nproc)
    spec = dict(bare_spec(cfg), precisions=precisions, warmup=sizes["warmup"],
                iters=cfg.train_iters - sizes["warmup"])
    from megatron_grow.flops import ledger

    tokens = cfg.global_batch_size * cfg.seq_length
    flops = ledger(cfg, tokens)["flops"]
    base = {"family": family, "width": width, "nproc": nproc, "layers": cfg.num_layers, "seq": cfg.seq_length,
            "global_batch": cfg.global_batch_size, "vocab": spec["vocab"], "params": spec["params"],
            "tokens_per_iter": tokens, "flops_per_iter": flops, "timed_iters": spec["iters"]}
    t0 = time.time()
    try:
        bare = run_worker(__file__, nproc, ["--spec", json.dumps(spec)], timeout=timeout)
    except Exception as e:  # noqa: BLE001 (the rows say why)
        bare = {"error": e}
    base["bare_wall_s"] = time.time() - t0
    rows = []
    for p in precisions:
        row = dict(base, precision=p)
        rows.append(row)
        if "error" in bare:
            failed(row, "bare loop", bare["error"])
        else:
            b = bare[p]
            row.update(bare_step_time_s=steady(b["step_time_s"], sizes["warmup"]), bare_losses=b["lm_loss"])
        try:
            run = train(flags[p], os.path.join(work, f"{family}_{width}_{nproc}_{p}.jsonl"), nproc, timeout)
        except Exception as e:  # noqa: BLE001
            failed(row, "trainer", e)
            continue
        steps = [r for r in run["records"] if "lm_loss" in r]
        row.update(step_time_s=steady([r["step_time_s"] for r in steps], sizes["warmup"]),
                   losses=[r["lm_loss"] for r in steps], trainer_wall_s=run["wall_s"])
    return rows


def failed(row: dict, who: str, e: Exception) -> None:
    """Record in ``row`` that ``who`` failed: the error's last exception line (a failed run's log ends with
    torchrun's summary; a rank's own exception comes before it) as ``error``, the log's tail as ``error_log``."""
    lines = str(e).splitlines()
    raised = [x for x in lines if re.match(r"(\[rank\d+\]: )?[\w.]*(Error|Exception): \S", x)]
    row["error"] = "; ".join(filter(None, [row.get("error"), f"{who}: {(raised or lines or [repr(e)])[0][:300]}"]))
    row["error_log"] = row.get("error_log", "") + str(e)[-3000:]


def derive(rows: list[dict], peak: dict) -> None:
    """Rates, ratios, fractions of peak and the targets, in place."""
    for r in rows:
        peak_flops = peak[r["precision"]] * 1e9 * r["nproc"]
        for who in ("", "bare_"):
            t = r.get(who + "step_time_s")
            r[who + "tokens_per_s"] = r["tokens_per_iter"] / t if t else None
            r[who + "flops_per_s"] = r["flops_per_iter"] / t if t else None
            r[who + "fraction_of_peak"] = r["flops_per_iter"] / t / peak_flops if t else None
        both = r["tokens_per_s"] and r["bare_tokens_per_s"]
        r["trainer_over_bare"] = r["tokens_per_s"] / r["bare_tokens_per_s"] if both else None
        big = r["width"] >= TARGET_WIDTH
        r["meets_trainer_over_bare"] = (r["trainer_over_bare"] >= TARGET_RATIO) if big and both else None
    for r in rows:
        if r["precision"] != "bf16":
            continue
        fp32 = next((x for x in rows if x["precision"] == "fp32" and
                     all(x[k] == r[k] for k in ("family", "width", "nproc"))), {})
        for who in ("", "bare_"):
            a, b = r.get(who + "tokens_per_s"), fp32.get(who + "tokens_per_s")
            r[who + "bf16_over_fp32"] = a / b if a and b else None
        r["meets_bf16_over_fp32"] = (r["bf16_over_fp32"] >= TARGET_BF16) \
            if r["width"] >= TARGET_WIDTH and r["bf16_over_fp32"] else None


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _met(x) -> str:
    return "-" if x is None else ("yes" if x else "**no**")


def markdown(data: dict) -> str:
    m, peak = data["meta"], data["peak"]
    out = ["# Training throughput: the trainer against a bare PyTorch loop", "",
           f"{m['layers']} layers, seq {m['seq']}, micro-batch {m['mbs']} per process (one per step), vocab "
           f"{m['vocab']}, mock data; width W: head dim 64 (32 at W 64), FFN 4W (gpt2) / 3W (llama3, 2 query heads "
           f"per KV group); AdamW (the trainer's defaults). One thread per process on {m['cores']} cores (load "
           f"average {m['load_before']:.1f} before, {m['load_after']:.1f} after; shared cores make absolute numbers "
           f"noisy). Median step over {m['warmup']} warm-up + the timed iterations; {m['seconds']:.0f} s in all.", "",
           f"Matmul peak of one thread: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s (square "
           f"{', '.join(map(str, m['matmul_sizes']))}; 2 processes: 2 x). The bare loop's bf16 is nanoGPT's: fp32 "
           "parameters under torch.autocast(\"cpu\", torch.bfloat16); the trainer's bf16 is megatron's bf16 "
           "parameters with fp32 master weights and gradient reduction. FLOP/s: the exact matmul FLOPs of "
           "megatron_grow.flops.ledger for both loops.", "",
           "| family | W | precision | procs | trainer tok/s | bare tok/s | trainer / bare | trainer GFLOP/s "
           "| of peak (bare) | bf16 / fp32 (bare) | trainer >= 0.9 x bare | bf16 >= 2 x fp32 |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in data["rows"]:
        if r.get("error"):
            out.append(f"| {r['family']} | {r['width']} | {r['precision']} | {r['nproc']} | error: "
                       f"{r['error'][:300].replace('|', '/')} |" + " |" * 7)
            continue
        gf = None if r["flops_per_s"] is None else r["flops_per_s"] / 1e9
        frac = f"{_f(r['fraction_of_peak'], '.1%')} ({_f(r['bare_fraction_of_peak'], '.1%')})"
        sp = f"{_f(r.get('bf16_over_fp32'), '.2f')} ({_f(r.get('bare_bf16_over_fp32'), '.2f')})" \
            if r["precision"] == "bf16" else "-"
        out.append(f"| {r['family']} | {r['width']} | {r['precision']} | {r['nproc']} "
                   f"| {_f(r['tokens_per_s'], ',.0f')} | {_f(r['bare_tokens_per_s'], ',.0f')} "
                   f"| {_f(r['trainer_over_bare'], '.2f')} | {_f(gf, '.1f')} "
                   f"| {frac} | {sp} | {_met(r['meets_trainer_over_bare'])} | {_met(r.get('meets_bf16_over_fp32'))} |")
    out += ["", f"Targets (issue 24) at width >= {TARGET_WIDTH}: trainer >= {TARGET_RATIO} x the bare loop; bf16 >= "
            f"{TARGET_BF16:g} x fp32 (the trainer's)."]
    return "\n".join(out) + "\n"


# ---- --profile: where an iteration's time goes ------------------------------------------------------
@contextlib.contextmanager
def function_modes_off():
    """Take every TorchFunctionMode off torch's stack for the block (megatron_grow.platform's CPU compat
    mode, which a previous run in this process left on), and put them back after."""
    import torch

    modes = [torch._C._pop_torch_function_stack() for _ in range(torch._C._len_torch_function_stack())]
    try:
        yield len(modes)
    finally:
        for mode in reversed(modes):
            torch._C._push_on_torch_function_stack(mode)


FACTORIES = ("empty", "zeros", "ones", "full", "arange", "tensor", "as_tensor", "rand", "randn", "randint",
             "empty_like", "zeros_like", "ones_like", "full_like", "empty_strided", "linspace")


@contextlib.contextmanager
def factories_instead_of_mode():
    """What the CPU compat mode does in a training step (a CUDA ``device=`` keyword of a tensor factory
    becomes the CPU), done by wrappers around torch's factory functions instead of a TorchFunctionMode
    that every torch call goes through: the mode's cost is the difference."""
    import torch

    from megatron_grow.platform import _is_cuda

    def redirect(fn):
        def factory(*a, **kw):
            if kw.get("device") is not None and _is_cuda(kw["device"]):
                kw["device"] = "cpu"
            return fn(*a, **kw)
        return factory

    saved = {name: getattr(torch, name) for name in FACTORIES}
    with function_modes_off():
        for name, fn in saved.items():
            setattr(torch, name, redirect(fn))
        try:
            yield
        finally:
            for name, fn in saved.items():
                setattr(torch, name, fn)


def host_profile(run, n: int) -> dict:
    """``run()`` (``n`` iterations) under cProfile, then under torch.profiler: the top functions by own
    time and the top torch ops by self CPU time, per iteration; and the CPU compat mode's calls."""
    import cProfile
    import io
    import pstats

    from torch.profiler import profile

    prof = cProfile.Profile()
    prof.runcall(run)
    stats = pstats.Stats(prof, stream=io.StringIO())
    mode = [(nc, tt) for (file, _, fn), (_, nc, tt, _, _) in stats.stats.items()
            if fn == "__torch_function__" and file.endswith(os.path.join("megatron_grow", "platform.py"))]
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:15]
    functions = [{"function": f"{os.path.basename(file)}:{line}({fn})", "calls": nc / n, "own_ms": tt / n * 1e3,
                  "cumulative_ms": ct / n * 1e3} for (file, line, fn), (_, nc, tt, ct, _) in top]
    with profile() as p:
        run()
    ops = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
    return {"functions": functions,
            "ops": [{"op": e.key, "calls": e.count / n, "self_ms": e.self_cpu_time_total / n / 1e3} for e in ops],
            "mode_calls": sum(nc for nc, _ in mode) / n, "mode_own_ms": sum(tt for _, tt in mode) / n * 1e3}


ROUNDS = 3  # --profile: timed rounds of each loop (the median one is reported)


def median_round(rounds: list[dict]) -> dict:
    return sorted(rounds, key=lambda r: r["iteration_ms"])[len(rounds) // 2]


def per_iteration(run, n: int) -> dict:
    """``run()`` (``n`` iterations): wall, CPU (user + system) and system milliseconds and minor page faults
    per iteration (this process's; CPU time changes least when the cores are shared)."""
    import resource

    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return {"iteration_ms": (t1 - t0) / n * 1e3, "sys_ms": (r1.ru_stime - r0.ru_stime) / n * 1e3,
            "cpu_ms": (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / n * 1e3,
            "minor_faults": (r1.ru_minflt - r0.ru_minflt) / n}


def profile_bare(spec: dict, bf16: bool, warmup: int, n: int) -> dict:
    bare = Bare(spec, bf16)
    for _ in range(warmup):
        bare.step()
    rounds = []
    for _ in range(ROUNDS):
        t = Timers()
        m = per_iteration(lambda t=t: [bare.step(t) for _ in range(n)], n)
        rounds.append(dict(m, phases_ms={k: v / n * 1e3 for k, v in t.seconds.items()}))
    return dict(median_round(rounds), **host_profile(lambda: [bare.step() for _ in range(n)], n))


def profile_trainer(flags: list[str], warmup: int, n: int) -> dict:
    """The trainer's own loop (training.Trainer.run) in this process, a world of one, ``n`` iterations at a
    time; each phase timed by a wrapper around the function the loop calls (same calls, same order)."""
    from megatron.core.pipeline_parallel import schedules

    from megatron_grow import training
    from megatron_grow.train import _quiet, setup

    _quiet()
    cfg, state, data, dev = setup(flags)
    trainer = training.Trainer(cfg, state, data, dev)
    t = Timers()

    class Batches:  # the data iterator, timed
        def __init__(self, it):
            self.it = it

        def __next__(self):
            with t("data"):
                return next(self.it)

    trainer.batches = Batches(trainer.batches)
    config = state.model.module.config
    wraps = [(state.model, "zero_grad_buffer", "zero grad"), (schedules, "forward_step", "forward"),
             (schedules, "backward_step", "backward"),
             (config, "finalize_model_grads_func", "finalize grads (DP all-reduce)"),
             (training, "average_loss", "loss all-reduce + .item()"),
             (state.optimizer, "grad_norm", "grad norm (all-reduce + .item())"),
             (state.optimizer, "step", "optimizer step"), (state.scheduler, "step", "LR scheduler"),
             (trainer, "log", "metrics record"), (trainer, "stop_if_asked", "stop check (all-reduce)")]
    trainer.evaluate_if_due = lambda: None  # (each run below ends where a run would evaluate: not measured)

    def run(k: int) -> None:
        """``k`` more iterations."""
        t.seconds.clear()
        cfg.train_iters = state.iteration + k
        trainer.run()

    run(warmup)
    undo = [t.wrap(*w) for w in wraps]

    def timed() -> dict:
        m = per_iteration(lambda: run(n), n)
        phases = {k: v / n * 1e3 for k, v in t.seconds.items()}
        phases["forward"] -= phases.get("data", 0.0)  # (forward_step fetches the batch)
        return dict(m, phases_ms=phases)

    # the mode and its alternative take turns, ROUNDS times (the cores may be shared): the median round of each
    with_mode, without = [], []
    for _ in range(ROUNDS):
        with_mode.append(timed())
        with factories_instead_of_mode():
            without.append(timed())
    out = dict(median_round(with_mode), without_mode=median_round(without))
    for u in undo:
        u()
    return dict(out, **host_profile(lambda: run(n), n))


def _phase_table(trainer: dict, bare: dict) -> list[str]:
    names = list(dict.fromkeys([*trainer["phases_ms"], *bare["phases_ms"]]))
    out = ["| phase | trainer ms | trainer, factory wrappers instead of the CPU mode ms | bare ms |",
           "|---|---:|---:|---:|"]
    cols = (trainer["phases_ms"], trainer["without_mode"]["phases_ms"], bare["phases_ms"])
    for k in names:
        out.append(f"| {k} | " + " | ".join(_f(c.get(k), ".1f") for c in cols) + " |")
    rest = [d["iteration_ms"] - sum(d["phases_ms"].values()) for d in (trainer, trainer["without_mode"], bare)]
    out.append("| other (the rest of the iteration) | " + " | ".join(f"{x:.1f}" for x in rest) + " |")
    for key, label, fmt in (("iteration_ms", "**iteration**", ".1f"), ("cpu_ms", "CPU time (user + system)", ".1f"),
                            ("sys_ms", "of which system", ".1f"), ("minor_faults", "minor page faults", ",.0f")):
        out.append(f"| {label} | " + " | ".join(format(d[key], fmt) for d in (trainer, trainer["without_mode"], bare))
                   + " |")
    return out


def _top(title: str, res: dict) -> list[str]:
    out = ["", f"{title}: top functions by own time (cProfile), per iteration", "", "```",
           f"{'own ms':>8} {'cum ms':>8} {'calls':>7}  function"]
    out += [f"{f['own_ms']:8.1f} {f['cumulative_ms']:8.1f} {f['calls']:7.0f}  {f['function']}"
            for f in res["functions"]]
    out += ["```", "", f"{title}: top torch ops by self CPU time (torch.profiler), per iteration", "", "```",
            f"{'self ms':>8} {'calls':>7}  op"]
    out += [f"{o['self_ms']:8.1f} {o['calls']:7.0f}  {o['op']}" for o in res["ops"]]
    return out + ["```"]


def profile(family: str, width: int, precisions: list[str], sizes: dict, stem: str) -> None:
    """--profile: one process, one thread; the bare loop, then the trainer, per precision."""
    import torch

    torch.set_num_threads(1)
    warmup, n = sizes["warmup"], timed_iters(sizes, width)
    results, md = {}, [f"# Where an iteration's time goes: trainer vs bare loop, {family} W{width}, one process", "",
                       f"Milliseconds per iteration: the mean over {n} iterations after {warmup} warm-up, the median "
                       f"of {ROUNDS} rounds (the trainer's two variants take turns). The trainer's phases are "
                       "wrappers around the functions its loop calls (forward: megatron's forward_step less the "
                       "batch fetch; backward: backward_step). 'Factory wrappers': the same iterations with "
                       "megatron_grow.platform's TorchFunctionMode taken off torch's stack and torch's tensor "
                       "factories wrapped to do its work (FACTORIES: a CUDA device keyword becomes the CPU). "
                       "cProfile's own times are inflated by its per-call cost."]
    for p in precisions:
        flags = trainer_flags(family, width, sizes, 1, p == "bf16")
        flags[flags.index("--train-iters") + 1] = "100000"  # (set per run: the loop stops where asked)
        flags += ["--lr-warmup-iters", "0", "--no-progress"]
        with function_modes_off():  # (a previous precision's trainer left the CPU mode on)
            bare = profile_bare(bare_spec(finalized(flags, 1)), p == "bf16", warmup, n)
        try:
            trainer = profile_trainer(flags, warmup, n)
        except Exception as e:  # noqa: BLE001 (a trainer that fails: say so, go on)
            results[p] = {"bare": bare, "trainer_error": f"{type(e).__name__}: {e}"}
            md += ["", f"## {p}: the trainer failed ({type(e).__name__}: {e}); bare {bare['iteration_ms']:.0f} ms "
                   "per iteration", *_top("bare loop", bare)]
            continue
        results[p] = {"trainer": trainer, "bare": bare}
        md += ["", f"## {p}: trainer {trainer['iteration_ms']:.0f} ms, bare {bare['iteration_ms']:.0f} ms per "
               f"iteration (trainer / bare time {trainer['iteration_ms'] / bare['iteration_ms']:.2f})", "",
               *_phase_table(trainer, bare), "",
               f"The CPU compat mode's __torch_function__: {trainer['mode_calls']:.0f} calls per iteration, "
               f"{trainer['mode_own_ms']:.1f} ms own time per iteration under cProfile; factory wrappers instead save "
               f"{trainer['iteration_ms'] - trainer['without_mode']['iteration_ms']:.1f} ms per iteration.",
               *_top("trainer", trainer), *_top("bare loop", bare)]
    write(stem + "_profile", {"family": family, "width": width, "sizes": {k: v for k, v in sizes.items()},
                              "results": results}, "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {stem}_profile.json and {stem}_profile.md")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="gpt2,llama3")
    ap.add_argument("--widths", default="64,128,256,512")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--nprocs", default="1,2", help="processes per run (2: DP2)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few iterations (the test's)")
    ap.add_argument("--vocab-size", type=int, help="instead of 8192 (--quick: 16384)")
    ap.add_argument("--micro-batch-size", type=int, help="per process, instead of 4 (--quick: 2)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run (each bare job and trainer run)")
    ap.add_argument("--profile", action="store_true",
                    help="break down one iteration of the first family and width in this process instead")
    ap.add_argument("--out", default=os.path.join(RESULTS, "throughput"), help="results stem (STEM.json, STEM.md)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return bare_worker(args)
    sizes = dict(QUICK if args.quick else FULL, **({"vocab": args.vocab_size} if args.vocab_size else {}),
                 **({"mbs": args.micro_batch_size} if args.micro_batch_size else {}))
    families, precisions = args.families.split(","), args.precisions.split(",")
    widths, nprocs = [int(w) for w in args.widths.split(",")], [int(n) for n in args.nprocs.split(",")]
    os.environ["OMP_NUM_THREADS"] = "1"  # (the trainer runs' threads per process: launch.train keeps it)
    if args.profile:
        return profile(families[0], widths[0], precisions, sizes, args.out)
    t0, load_before = time.time(), os.getloadavg()[0]
    peak = matmul_peak(sizes["matmul"])
    print(f"matmul peak, one thread: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for family in families:
            for width in widths:
                for nproc in nprocs:
                    rows += measure(family, width, nproc, sizes, precisions, work, args.timeout)
                    derive(rows, peak)
                    for r in rows[-len(precisions):]:
                        print(f"{family} W{width} {r['precision']} x{nproc}: trainer "
                              f"{_f(r['tokens_per_s'], ',.0f')} tok/s, bare {_f(r['bare_tokens_per_s'], ',.0f')} "
                              f"tok/s{' (' + r['error'] + ')' if r.get('error') else ''}", flush=True)
    meta = {k: v for k, v in sizes.items() if k not in ("iters", "matmul")}
    meta.update(iters=sizes["iters"], matmul_sizes=sizes["matmul"], quick=args.quick, cores=os.cpu_count(),
                load_before=load_before, load_after=os.getloadavg()[0], seconds=time.time() - t0)
    import torch

    meta["torch"] = torch.__version__
    data = {"meta": meta, "peak": peak, "rows": rows}
    md = markdown(data)
    write(args.out, data, md)
    print(md)
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
