"""Progressive growth: plans, function preservation, copies, optimizer state, online vs offline, resume."""

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import TINY, assert_close, grow_both_ways, load_state, losses, read_metrics, run, torchrun
from megatron_grow.growth.plan import make_plan, problems, warnings

ARGS = ["--model", "llama3", *TINY, "--mock-data", "--vocab-size", "1000", "--micro-batch-size", "2",
        "--global-batch-size", "4", "--lr", "1e-2", "--lr-warmup-iters", "1", "--eval-interval", "100",
        "--eval-iters", "2", "--train-iters", "8"]
GROW = ["--num-layers", "1", "--grow-at-iter", "4", "--grow-to-layers", "4", "--grow-init", "copy"]


def expand(*args, check=True):
    return run([sys.executable, "tools/expand_checkpoint.py", *map(str, args)], timeout=300, check=check)


def expand_here(*args, check=False):
    """tools/expand_checkpoint.py in this process, for inputs it refuses before building anything (no process
    group is started): its exit status and what it printed, as ``expand(..., check=False)`` gives them."""
    from tools import expand_checkpoint

    out, code = io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            expand_checkpoint.main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            out.write(e.code if isinstance(e.code, str) else "")
    return subprocess.CompletedProcess(args, code, out.getvalue(), "")


def test_placement_maps():
    def m(L0, L1, placement, init="copy"):
        return [(t.source, t.trained) for t in make_plan(L0, L1, placement, init)]

    assert m(1, 4, "bottom") == [(0, False)] * 3 + [(0, True)]
    assert m(1, 4, "top") == [(0, True)] + [(0, False)] * 3
    assert m(2, 5, "bottom") == [(0, False), (1, False), (0, False), (0, True), (1, True)]
    assert m(2, 5, "stack") == [(0, True), (1, True), (0, False), (1, False), (0, False)]
    assert m(2, 5, "interleave") == [(0, True), (0, False), (0, False), (1, True), (1, False)]
    assert m(2, 4, "top", "random") == [(0, True), (1, True), (None, False), (None, False)]
    zero = make_plan(0, 3, "bottom", "zero")
    assert all(t.source is None and t.zero_output for t in zero)
    cz = make_plan(1, 3, "bottom", "copy_zeroL")
    assert [t.zero_output for t in cz] == [True, True, False]


def test_plan_problems_name_the_flag():
    assert any("--grow-to-layers 2 must exceed" in p for p in problems(2, 2, "bottom", "random"))
    assert any("0-layer model has no block to copy" in p for p in problems(0, 4, "bottom", "copy"))
    assert any("--grow-placement 'diagonal'" in p for p in problems(1, 4, "diagonal", "random"))
    # zero-output layers under trained ones: warned (benchmarks/growth_spike.py), above them or from 0 layers: not
    assert "--grow-placement stack" in warnings(1, "bottom", "copy_zeroL")[0] and warnings(2, "bottom", "zero")
    assert not (warnings(1, "stack", "copy_zeroL") or warnings(1, "top", "zero") or warnings(0, "bottom", "zero")
                or warnings(1, "bottom", "copy"))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained 1-layer checkpoint (TP1/PP1, DP2) at iteration 4."""
    d = tmp_path_factory.mktemp("src")
    torchrun(2, [*ARGS, "--num-layers", "1", "--train-iters", "4", "--save", str(d / "ck")])
    return d / "ck"


@pytest.mark.parametrize("init,src_layers,model", [("copy_zeroL", 1, "llama3"), ("zero", 0, "llama3"),
                                                   ("copy_zeroL", 1, "gpt2")])
def test_function_preserving_growth_across_layouts(tmp_path, init, src_layers, model, source):
    """copy_zeroL / zero: logits of the 4-layer TP2xPP2 model equal the source model's (TP1/PP1)."""
    args = [*ARGS, "--model", model]
    if (src_layers, model) != (1, "llama3"):
        source = tmp_path / "src"
        torchrun(1, [*args, "--num-layers", str(src_layers), "--train-iters", "2", "--save", str(source)])
    grown = tmp_path / "grown"
    expand("--load", source, "--save", grown, "--target-num-layers", 4, "--init", init)
    ref, got = tmp_path / "ref.pt", tmp_path / "got.pt"
    torchrun(1, ["--out", str(ref), *args, "--num-layers", str(src_layers), "--load", str(source)],
             module="tools.dump_logits")
    torchrun(4, ["--out", str(got), *args, "--num-layers", "4", "--load", str(grown),
                 "--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"],
             module="tools.dump_logits")
    a, b = torch.load(ref), torch.load(got)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()




@pytest.mark.parametrize("mode", ["inherit", "copy", "reset"])
def test_copy_init_and_optimizer_state_modes(world, tmp_path, source, mode):
    grown = tmp_path / "grown"
    expand("--load", source, "--save", grown, "--target-num-layers", 4, "--init", "copy", "--optimizer-state", mode)
    src_p, src_m, src_state = load_state(ARGS, source, 1)
    new_p, new_m, new_state = load_state(ARGS, grown, 4)
    assert new_state.iteration == src_state.iteration == 4 and new_state.consumed_samples == 16
    for name, p in new_p.items():
        sname = name.replace(f"layers.{name.split('.')[2]}.", "layers.0.") if ".layers." in name else name
        assert torch.equal(p, src_p[sname]), name  # bottom placement, copy init: every layer is the block
        trained = ".layers." not in name or ".layers.3." in name
        expect = {"inherit": src_m[sname] if trained else torch.zeros_like(p),
                  "copy": src_m[sname], "reset": torch.zeros_like(p)}[mode]
        assert torch.equal(new_m[name], expect), (mode, name)
    assert any(m.abs().sum() > 0 for m in src_m.values())  # the source really had state to move


def test_online_growth_equals_offline_expand_and_resume(tmp_path):
    online = tmp_path / "online.jsonl"
    torchrun(2, [*ARGS, *GROW, "--grow-tensor-model-parallel-size", "2", "--metrics-file", str(online)])
    recs = read_metrics(online)
    event = [r for r in recs if r.get("event") == "grow"]
    assert len(event) == 1 and event[0]["iter"] == 4 and event[0]["to_layers"] == 4
    assert event[0]["from_layout"] == {"tp": 1, "pp": 1, "dp": 2} and event[0]["to_layout"]["tp"] == 2
    assert [r["num_layers"] for r in recs if "lm_loss" in r] == [1] * 4 + [4] * 4
    # offline: stop at tau, expand with the same plan, resume with the same flags
    ck, grown = tmp_path / "ck", tmp_path / "grown"
    torchrun(2, [*ARGS, *GROW, "--exit-interval", "4", "--save", str(ck)])
    expand("--load", ck, "--save", grown, "--target-num-layers", 4, "--init", "copy")
    offline = tmp_path / "offline.jsonl"
    torchrun(2, [*ARGS, *GROW, "--grow-tensor-model-parallel-size", "2", "--load", str(grown), "--save", str(grown),
                 "--metrics-file", str(offline)])
    after = {k: v for k, v in losses(online).items() if k > 4}
    assert_close(losses(offline), after, rel=1e-5)
    # the compute ledger runs on through growth, the checkpoint and the tool: 4 shallow + 4 deep iterations
    its = [r for r in recs if "lm_loss" in r]
    assert its[-1]["cum_flops"] == sum(r["flops"] for r in its) and its[3]["flops"] < its[4]["flops"]
    off = [r for r in read_metrics(offline) if "lm_loss" in r][-1]
    for key in ("cum_flops", "cum_flops_6n", "cum_flops_6n_nonemb", "cum_tokens"):
        assert off[key] == its[-1][key], key


def test_grow_schedule_equals_offline_steps_and_resumes(tmp_path):
    """--grow-schedule 2@3,4@6:tp2 (1 -> 2 layers in memory, then 2 -> 4 into TP2 through a checkpoint)
    gives the losses of the same two growths done offline with resumes between them; resumed between
    the steps (the second growth still to come) and after both, it goes on as the uninterrupted run."""
    flags = [*ARGS, "--train-iters", "9", "--num-layers", "1", "--grow-schedule", "2@3,4@6:tp2", "--grow-init", "copy"]
    online, ck = tmp_path / "online.jsonl", tmp_path / "ck"
    torchrun(2, [*flags, "--save", str(ck), "--save-interval", "2", "--metrics-file", str(online)])
    recs = read_metrics(online)
    events = [r for r in recs if r.get("event") == "grow"]
    assert [(e["iter"], e["from_layers"], e["to_layers"], e["via"], e["to_layout"]["tp"]) for e in events] == \
        [(3, 1, 2, "memory", 1), (6, 2, 4, "checkpoint", 2)]
    assert [r["num_layers"] for r in recs if "lm_loss" in r] == [1] * 3 + [2] * 3 + [4] * 3
    # offline: stop at each tau, expand with the same plan, resume with the same flags
    step1, grown2, grown4 = tmp_path / "step1", tmp_path / "grown2", tmp_path / "grown4"
    torchrun(2, [*flags, "--exit-interval", "3", "--save", str(step1)])
    expand("--load", step1, "--save", grown2, "--target-num-layers", 2, "--init", "copy")
    torchrun(2, [*flags, "--load", str(grown2), "--save", str(grown2), "--exit-interval", "6"])
    expand("--load", grown2, "--save", grown4, "--target-num-layers", 4, "--init", "copy")
    offline = tmp_path / "offline.jsonl"
    torchrun(2, [*flags, "--load", str(grown4), "--save", str(grown4), "--metrics-file", str(offline)])
    assert_close(losses(offline), {k: v for k, v in losses(online).items() if k > 6}, rel=1e-5)
    for stop in (4, 8):  # between the steps and after both
        res = tmp_path / f"res{stop}.jsonl"
        torchrun(2, [*flags, "--load", str(ck), "--ckpt-step", str(stop), "--metrics-file", str(res)])
        assert len([r for r in read_metrics(res) if r.get("event") == "grow"]) == (stop < 6)
        assert losses(res) == {k: v for k, v in losses(online).items() if k > stop}, stop


def test_function_preserving_online_growth_into_uneven_pipeline(tmp_path):
    """copy_zeroL grown from DP2 into PP2 with stages of 3 and 1 layers: equal held-out loss (measured after
    growth on request: a function-preserving growth does not re-measure it by default)."""
    m = tmp_path / "m.jsonl"
    torchrun(2, [*ARGS, *GROW[:-1], "copy_zeroL", "--grow-pipeline-model-parallel-size", "2",
                 "--grow-pipeline-layers", "3,1", "--metrics-file", str(m)], env={"MEGATRON_GROW_GROW_EVAL_AFTER": "1"})
    ev = [r for r in read_metrics(m) if r.get("event") == "grow"][0]
    assert ev["to_layout"] == {"tp": 1, "pp": 2, "dp": 1} and ev["via"] == "checkpoint" and ev["loss_after_measured"]
    assert abs(ev["loss_before"] - ev["loss_after"]) <= 1e-5 * ev["loss_before"]


@pytest.mark.parametrize("flags", [["--optimizer", "muon-nsgd", "--grow-init", "random", "--grow-optimizer-state",
                                    "inherit"],
                                   ["--bf16", "--grow-init", "copy_zeroL", "--grow-optimizer-state", "reset"]],
                         ids=["fp32-muon-random-inherit", "bf16-adam-copy_zeroL-reset"])
def test_in_memory_growth_equals_checkpoint_path(tmp_path, flags):
    """DP2 -> DP2: growth in memory gives bit for bit the metrics of growth through a checkpoint (every loss,
    grad norm and LR after it), fp32 with Muon-NSGD's momentum and bf16 with AdamW (fp32 masters carried
    exactly); copy_zeroL keeps the held-out loss without re-measuring it."""
    mem, ck = grow_both_ways(tmp_path, 2, [*ARGS, *GROW, *flags])
    assert mem["to_layout"] == mem["from_layout"] == {"tp": 1, "pp": 1, "dp": 2}
    assert mem["loss_after_measured"] == ck["loss_after_measured"] == ("copy_zeroL" not in flags)
    if "copy_zeroL" in flags:
        assert mem["loss_after"] == mem["loss_before"]


def test_new_layer_lr_multiplier(tmp_path):
    """--grow-new-layer-lr-mult 3 --grow-new-layer-lr-iters 2: the new layers step at 3x, 2x, then 1x the
    shared LR after growth, the trained layer at 1x; the same run resumed after tau continues identically."""
    flags = [*ARGS, *GROW, "--lr-warmup-iters", "0", "--lr-decay-style", "constant", "--grow-new-layer-lr-mult", "3",
             "--grow-new-layer-lr-iters", "2"]
    plain, boosted = tmp_path / "plain.jsonl", tmp_path / "boosted.jsonl"
    torchrun(1, [*ARGS, *GROW, "--lr-warmup-iters", "0", "--lr-decay-style", "constant", "--metrics-file", str(plain)])
    ck = tmp_path / "ck"
    torchrun(1, [*flags, "--save", str(ck), "--save-interval", "5", "--metrics-file", str(boosted)])
    recs = [r for r in read_metrics(boosted) if "lm_loss" in r]
    assert [r.get("lr_new_layers") for r in recs] == [None] * 4 + [pytest.approx(x * 1e-2) for x in (3, 2, 1, 1)]
    assert all(r["lr"] == pytest.approx(1e-2) for r in recs)
    a, b = losses(plain), losses(boosted)
    assert all(a[i] == b[i] for i in range(1, 6)) and a[6] != b[6]  # same until the first boosted step shows
    res = tmp_path / "res.jsonl"
    torchrun(1, [*flags, "--load", str(ck), "--ckpt-step", "5", "--metrics-file", str(res)])
    assert losses(res) == {k: v for k, v in b.items() if k > 5}


def test_resume_around_tau(tmp_path):
    """Resumed before tau (growth happens after the load) and after it (the grown model is loaded): the
    losses and the compute ledger go on as in the run that saved those checkpoints."""
    full, ck = tmp_path / "full.jsonl", tmp_path / "ck"
    torchrun(1, [*ARGS, *GROW, "--save", str(ck), "--save-interval", "2", "--metrics-file", str(full)])
    last = lambda path: [r for r in read_metrics(path) if "lm_loss" in r][-1]  # noqa: E731
    for stop in (2, 6):
        res = tmp_path / f"res{stop}.jsonl"
        torchrun(1, [*ARGS, *GROW, "--load", str(ck), "--ckpt-step", str(stop), "--metrics-file", str(res)])
        assert any(r.get("event") == "grow" for r in read_metrics(res)) == (stop < 4)
        assert losses(res) == {k: v for k, v in losses(full).items() if k > stop}, stop
        assert last(res)["cum_flops"] == last(full)["cum_flops"] and last(res)["cum_tokens"] == last(full)["cum_tokens"]


def test_mismatched_checkpoint_says_how_to_fix(tmp_path, source):
    res = torchrun(1, [*ARGS, "--num-layers", "4", "--load", str(source), "--save", str(source)], check=False)
    assert res.returncode != 0
    assert "is a 1-layer llama3 model, but this run builds a 4-layer" in res.stdout
    assert "tools/expand_checkpoint.py" in res.stdout and "--target-num-layers 4" in res.stdout
    res = torchrun(1, [*ARGS, "--model", "gpt2", "--num-layers", "1", "--load", str(source), "--save", str(source)],
                   check=False)
    assert res.returncode != 0 and "cannot fix this" in res.stdout


def _digest(path):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for f in sorted(files):
            h.update(f.encode() + open(os.path.join(root, f), "rb").read())
    return h.hexdigest()


def test_expand_tool_bad_inputs(tmp_path, source):
    before = _digest(source)
    dst = tmp_path / "dst"
    cases = [
        (["--target-num-layers", 1], "--target-num-layers 1 must exceed"),
        (["--target-num-layers", 4, "--placement", "diagonal"], "--placement"),
        (["--target-num-layers", 4, "--init", "copy", "--target-pipeline-model-parallel-size", 3],
         "does not split evenly"),
    ]
    for extra, needle in cases:
        res = expand_here("--load", source, "--save", dst, *extra)
        assert res.returncode != 0 and needle in res.stdout, res.stdout
        assert not dst.exists()
    res = expand_here("--load", tmp_path / "nothing", "--save", dst, "--target-num-layers", 4)
    assert res.returncode != 0 and "not a megatron_grow checkpoint" in res.stdout
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    os.remove(broken / "iter_0000004" / "metadata.json")
    res = expand_here("--load", broken, "--save", dst, "--target-num-layers", 4)
    assert res.returncode != 0 and "missing or truncated" in res.stdout
    # damaged files: refused naming the file, as the trainer would, and nothing written
    for name, damage, needle in [("__0_0.distcp", "flip", "differs from what was saved"),
                                 ("__0_1.distcp", "truncate", "bytes,"),
                                 ("checksums.1.json", "remove", "checksums.1.json is missing"),
                                 ("__0_1.distcp", "remove-unlisted", "missing (the checkpoint's .metadata names it)"),
                                 ("common.pt", "truncate-unchecked", "common.pt")]:
        shutil.rmtree(broken)
        shutil.copytree(source, broken)
        f = broken / "iter_0000004" / name
        if damage.startswith("remove"):
            os.remove(f)
            if damage == "remove-unlisted":  # a shard gone before the checksums were written: they do not name it
                for c in (broken / "iter_0000004").glob("checksums.*.json"):
                    c.write_text(json.dumps({k: v for k, v in json.loads(c.read_text()).items() if k != name}))
        elif damage == "flip":
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 0xFF
            f.write_bytes(bytes(data))
        else:
            f.write_bytes(f.read_bytes()[:100])
            if damage == "truncate-unchecked":  # (a checkpoint without checksums: the read fails, named)
                for c in (broken / "iter_0000004").glob("checksums.*.json"):
                    os.remove(c)
        # (the unchecked read fails after the process group started: in a process of its own)
        run_it = expand if damage == "truncate-unchecked" else expand_here
        res = run_it("--load", broken, "--save", dst, "--target-num-layers", 4, check=False)
        assert res.returncode != 0 and needle in res.stdout and str(broken) in res.stdout, (name, res.stdout[-2000:])
        assert "Traceback" not in res.stdout and not dst.exists(), (name, res.stdout[-2000:])
    res = expand_here("--load", source, "--ckpt-step", 3, "--save", dst, "--target-num-layers", 4)
    assert res.returncode != 0 and "--ckpt-step 3: no complete checkpoint of that iteration" in res.stdout
    dst.mkdir()
    res = expand_here("--load", source, "--save", dst, "--target-num-layers", 4)
    assert res.returncode != 0 and "exists" in res.stdout and os.listdir(dst) == []
    res = expand_here("--load", source, "--save", source / "grown", "--target-num-layers", 4)
    assert res.returncode != 0 and "lies inside --load" in res.stdout
    res = expand_here("--load", source, "--target-num-layers", 4, "--placement", "interleave", "--dry-run")
    assert res.returncode == 0 and "layer   3 <- copy" not in res.stdout and "1 -> 4 layers" in res.stdout
    assert _digest(source) == before  # the source was only read
