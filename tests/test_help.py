"""--help and the flag table: every flag with its group, one-line help and default, from RunConfig's metadata."""

import dataclasses
import re
import sys

import pytest

from conftest import run
from megatron_grow import config

FLAGS = config.flag_fields()


def test_every_flag_has_a_group_help_and_default():
    for f in FLAGS:
        assert f.metadata.get("group") in config.GROUPS, f"{f.name}: group {f.metadata.get('group')!r}"
        help = f.metadata.get("help") or ""
        assert help.strip() and "\n" not in help, f"{f.name}: help {help!r}"
        shown = config.shown_default(f)  # a None default must say what it means
        assert shown.strip() and "None" not in shown, f"{f.name}: default shown as {shown!r}"
    assert [f.name for f in dataclasses.fields(config.RunConfig) if f not in FLAGS] == [
        "world_size", "grow_plan_text", "grown_from_layers", "grown_at_iter"]
    assert all(any(f.metadata["group"] == g for f in FLAGS) for g in config.GROUPS), "a group without flags"


def test_flags_parse_as_the_dataclass_says():
    """The parser's defaults are RunConfig's, types and choices hold, and a saved config restores."""
    assert config.parse_args([]) == config.RunConfig()
    cfg = config.parse_args(["--num-layers", "3", "--lr", "1e-2", "--no-progress", "--bf16", "--grow-at", "auto",
                             "--model", "gpt2", "--split", "1,1,0", "--no-muon-nesterov"])
    assert (cfg.num_layers, cfg.lr, cfg.progress, cfg.bf16, cfg.grow_at, cfg.model, cfg.split, cfg.muon_nesterov) == (
        3, 0.01, False, True, "auto", "gpt2", "1,1,0", False)
    assert type(cfg.num_layers) is int and type(cfg.lr) is float and cfg.untie_embeddings_and_output_weights is None
    assert config.saved_config(dataclasses.asdict(cfg)) == cfg
    with pytest.raises(SystemExit):
        config.parse_args(["--model", "nope"])


def sections(text: str) -> dict[str, list[str]]:
    """--help's argument groups: title -> the flags listed under it, in order."""
    out, current = {}, None
    for line in text.splitlines():
        if re.fullmatch(r"\S.*:", line):
            current = out.setdefault(line[:-1], [])
        elif current is not None and (m := re.match(r"  (--[a-z0-9-]+)", line)):
            current.append(m.group(1))
    return out


def test_help_lists_every_flag_with_help_and_default_by_group():
    res = run([sys.executable, "-m", "megatron_grow.train", "--help"], timeout=240, env={"COLUMNS": "1000"})
    text = res.stdout[res.stdout.index("usage:"):]
    flat = " ".join(text.split())
    assert re.search(r"--train-iters N\s+training iterations \(default: 100, or --train-samples // "
                     r"--global-batch-size\)", text)
    assert "--progress, --no-progress a progress bar on stderr (default: on)" in flat
    assert "--weight-decay X decoupled weight decay (not on norms and biases) (default: 0.1 for adam, 0.01 for " \
           "muon-nsgd)" in flat
    listed = sections(text)
    for name, title in config.GROUPS.items():
        assert listed.get(title) == [config.flag_name(f) for f in FLAGS if f.metadata["group"] == name], title
    for f in FLAGS:
        assert f"{f.metadata['help']} (default: {config.shown_default(f)})" in flat, f.name


def cells(row: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_flag_table_has_one_row_per_flag():
    rows = [r for r in config.flag_table().splitlines() if r.startswith("| `")]
    by_group = [f for g in config.GROUPS for f in FLAGS if f.metadata["group"] == g]
    assert len(rows) == len(FLAGS) == len(by_group)
    for row, f in zip(rows, by_group, strict=True):
        flag, default, help = cells(row)
        assert flag.strip("`").replace("[no-]", "").split()[0] == config.flag_name(f), row
        assert (default, help) == (config.shown_default(f), f.metadata["help"]), row
    growth = config.flag_table("growth").splitlines()
    assert len(growth) == 2 + sum(f.metadata["group"] == "growth" for f in FLAGS)
    assert cells(growth[0]) == ["flag", "default", "help"]
    placement = next(r for r in growth if "--grow-placement" in r)
    assert cells(placement)[0] == "`--grow-placement bottom|top|stack|interleave`"
    assert "`--[no-]bf16` | on on GPU, off on CPU |" in config.flag_table("training")
    with pytest.raises(ValueError):
        config.flag_table("nope")


def test_flag_vocabulary_agrees_with_its_owners():
    """config.py imports no component (tests/test_layout.py), so it names the model families, their presets
    and the growth vocabulary itself: as the components that own them do."""
    from megatron_grow.growth.plan import INITS, OPTIMIZER_STATE_MODES, PLACEMENTS
    from megatron_grow.models import FAMILIES
    from megatron_grow.optim.newton_schulz import BACKENDS

    assert config.CHOICES["model"] == sorted(FAMILIES)
    assert config.PRESET_NAMES == "; ".join(f"{name}: {', '.join(fam['presets'])}" for name, fam in FAMILIES.items())
    assert (config.CHOICES["grow_placement"], config.CHOICES["grow_init"], config.CHOICES["grow_optimizer_state"]) == (
        list(PLACEMENTS), list(INITS), list(OPTIMIZER_STATE_MODES))
    assert config.CHOICES["ns_backend"] == ["auto", *BACKENDS]
