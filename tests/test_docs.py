"""The README and docs/*.md against the repository: every relative link and image points to a file that
exists and every #anchor to a heading there; every command in a ```bash block (and every inline `command`)
that runs a repository script names a file that exists and passes only flags that program accepts; each
<!-- flags:GROUP --> table equals config.flag_table(GROUP), so the docs and --help cannot disagree; the README
stays short.

    python tests/test_docs.py --write-flag-tables   # regenerate the flag tables after changing a flag
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
README_MAX_LINES = 300

FENCE = re.compile(r"^ {0,3}(```+|~~~+)\s*([\w+-]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*\b(?:src|href)=[\"']([^\"']+)[\"']", re.I)
INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
FLAGS_BLOCK = re.compile(r"<!-- flags:([\w-]+) -->\n(.*?)<!-- /flags -->", re.S)
FLAG = re.compile(r"^--[A-Za-z0-9][\w-]*$")

# Where a bash script sends the arguments it is given ("$@"): "train" (the trainer's flags), a python script
# (its --help), or None (not checked: pytest's or the installer's own). A bash script a command runs must be
# listed here (or match one of the patterns), so a new one is looked at once.
BASH_FORWARDS = {
    "scripts/run.sh": "train",
    "scripts/test.sh": None,  # a lane, then pytest's arguments
    "scripts/install.sh": None,
    "examples/pretrain_*.sh": "train",
    "examples/slurm/*.sbatch": "train",
    "benchmarks/gpu_check.sh": "benchmarks/gpu_check.py",
}
# python scripts that pass the flags they do not know on to the trainer's parser (parse_known_args)
TAKES_TRAINER_FLAGS = {"tools/plan_memory.py", "tools/dump_logits.py"}
PYTHONS = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")
SCRIPT_PATH = re.compile(
    r"^(?:\./)?(?:tools|benchmarks|scripts|examples|tests|megatron_grow)/[\w./-]+\.(?:py|sh|sbatch)$")


# ---- markdown ---------------------------------------------------------------------------------------------


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def split_fences(md: str) -> tuple[str, list[tuple[str, str, int]]]:
    """The text outside fenced code blocks (each code line blanked, so line numbers stay) and the blocks:
    (info string, code, first line number)."""
    outside, blocks, fence, lang, code, start = [], [], None, "", [], 0
    for n, line in enumerate(md.split("\n"), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence, lang, code, start = m.group(1), m.group(2).lower(), [], n + 1
            outside.append("")
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) and not line.strip(fence[0]).strip():
            blocks.append((lang, "\n".join(code), start))
            fence = None
            outside.append("")
        elif fence is not None:
            code.append(line)
            outside.append("")
        else:
            outside.append(line)
    return "\n".join(outside), blocks


def github_anchor(heading: str) -> str:
    """GitHub's heading id: the rendered text (link targets, HTML tags dropped), lowercased, every character
    but letters, digits, spaces, - and _ dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(md: str) -> set[str]:
    """The ids of every heading outside code blocks; repeats get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in split_fences(md)[0].split("\n"):
        m = HEADING.match(line)
        if m:
            a = github_anchor(m.group(2))
            out.add(a if a not in seen else f"{a}-{seen[a]}")
            seen[a] = seen.get(a, 0) + 1
    out |= {m.group(1) for m in re.finditer(r"<a\s+(?:name|id)=[\"']([^\"']+)[\"']", md)}
    return out


def links(md: str) -> list[tuple[int, str]]:
    """(line, target) of every link, image and link definition outside code (blocks and inline spans)."""
    text = split_fences(md)[0]
    text = INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)  # same length, same lines
    found = [m for pat in (LINK, REF_DEF, HTML_SRC) for m in pat.finditer(text)]
    return sorted((text.count("\n", 0, m.start()) + 1, m.group(1)) for m in found)


def broken_links(page: str, md: str | None = None) -> list[str]:
    """Every relative link of ``page`` (a path under the repository) whose file or #anchor is missing."""
    md = read(page) if md is None else md
    problems = []
    for line, target in links(md):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...: not ours to check
            continue
        path, _, anchor = target.partition("#")
        where = f"{page}:{line}: ({target})"
        full = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else os.path.join(ROOT, page)
        if not (full + os.sep).startswith(ROOT + os.sep) or not os.path.exists(full):
            problems.append(f"{where}: no file {os.path.relpath(full, ROOT)}")
        elif anchor and full.endswith(".md"):
            target_md = md if not path else open(full, encoding="utf-8").read()
            if anchor not in anchors(target_md):
                problems.append(f"{where}: no heading #{anchor} in {os.path.relpath(full, ROOT)}")
    return problems


# ---- commands ---------------------------------------------------------------------------------------------


def shell_lines(code: str) -> list[str]:
    """The commands of a bash block: comments dropped, continuation lines joined."""
    kept = [re.sub(r"(^|\s)#.*$", "", line) for line in code.split("\n")]
    return [c.strip() for c in "\n".join(kept).replace("\\\n", " ").split("\n") if c.strip()]


def tokens(line: str) -> list[list[str]]:
    """Words of a shell line split into simple commands (at ; & | && ||), brackets of [--optional FLAGS] dropped."""
    try:
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split, lex.commenters = True, ""
        words = list(lex)
    except ValueError:  # unbalanced quotes in prose: words are enough here
        words = line.split()
    out: list[list[str]] = [[]]
    for w in words:
        if w and set(w) <= set(";&|"):
            out.append([])
        elif w.strip("[]"):
            out[-1].append(w.strip("[]"))
    return [c for c in out if c]


def program(words: list[str]) -> tuple[str, str, list[str]] | None:
    """What a simple command runs, if it runs a repository program: ("module", "megatron_grow.train", args),
    ("script", "tools/x.py", args) or ("bash", "scripts/run.sh", args); None for anything else."""
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # NPROC=4 bash ...
        words = words[1:]
    for i, w in enumerate(words):
        rest = words[i + 1:]
        if PYTHONS.match(w) or w == "torchrun":
            for j, a in enumerate(rest):
                if a == "-c":
                    return None
                if a == "-m" and j + 1 < len(rest):
                    mod = rest[j + 1]
                    return ("module", mod, rest[j + 2:]) if mod.split(".")[0] == "megatron_grow" else None
                if a.endswith(".py"):
                    return "script", a.removeprefix("./"), rest[j + 1:]
            return None
        if w in ("bash", "sh", "sbatch", "srun"):
            for j, a in enumerate(rest):
                if a == "-c":
                    return None
                if SCRIPT_PATH.match(a) or a.endswith((".sh", ".sbatch")):
                    return "bash", a.removeprefix("./"), rest[j + 1:]
            return None
        if i == 0 and SCRIPT_PATH.match(w):  # an inline `tools/expand_checkpoint.py --load ...`
            return ("script" if w.endswith(".py") else "bash"), w.removeprefix("./"), rest
    return None


def commands(page: str, md: str | None = None) -> list[tuple[str, tuple[str, str, list[str]]]]:
    """(where, program) of every command of ``page`` that runs a repository program: in ```bash / sh blocks,
    and inline code spans that start with one."""
    md = read(page) if md is None else md
    outside, blocks = split_fences(md)
    found = []
    for lang, code, start in blocks:
        if lang in ("bash", "sh", "shell", "console"):
            for line in shell_lines(code):
                for words in tokens(line):
                    prog = program(words)
                    if prog:
                        found.append((f"{page} (block at line {start}): {line[:90]}", prog))
    for m in INLINE_CODE.finditer(outside):
        span = " ".join(m.group(1).split())
        for words in tokens(span):
            prog = program(words)
            if prog:
                found.append((f"{page}:{outside.count(chr(10), 0, m.start()) + 1}: `{span[:90]}`", prog))
    return found


def passed_flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if FLAG.match(a.split("=", 1)[0])]


_TRAIN_FLAGS: set[str] = set()


def train_flags() -> set[str]:
    if not _TRAIN_FLAGS:
        from megatron_grow import config

        _TRAIN_FLAGS.update(config.parser()._option_string_actions)
    return _TRAIN_FLAGS


_HELP: dict[str, str] = {}


def script_help(script: str) -> str:
    """``python SCRIPT --help`` (stdout and stderr), once per script."""
    if script not in _HELP:
        res = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                             timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT))
        out = res.stdout + res.stderr
        assert "usage:" in out, f"python {script} --help printed no usage (exit {res.returncode}):\n{out[-2000:]}"
        _HELP[script] = out
    return _HELP[script]


def forward_of(script: str):
    for pattern, target in BASH_FORWARDS.items():
        if fnmatch.fnmatch(script, pattern):
            return target
    raise KeyError(script)


def command_problems(where: str, prog: tuple[str, str, list[str]], script_help=None) -> list[str]:
    """What is wrong with one command: a missing file, an unknown flag. Python scripts' flags are checked
    only given ``script_help`` (script -> its --help output; it starts a process per script)."""
    kind, name, args = prog
    flags = passed_flags(args)
    if kind == "module":
        path = name.replace(".", "/")
        if not (os.path.exists(os.path.join(ROOT, path + ".py")) or os.path.isdir(os.path.join(ROOT, path))):
            return [f"{where}: no module {name}"]
        if name != "megatron_grow.train":
            return [f"{where}: -m {name}: only megatron_grow.train's flags are known to this test"]
        return [f"{where}: {f} is not a flag of megatron_grow.train" for f in flags if f not in train_flags()]
    if not os.path.isfile(os.path.join(ROOT, name)):
        return [f"{where}: no file {name}"]
    if kind == "bash":
        try:
            target = forward_of(name)
        except KeyError:
            return [f"{where}: {name} is not in tests/test_docs.py's BASH_FORWARDS (where do its arguments go?)"]
        if target is None:
            return []
        if target == "train":
            return [f"{where}: {f} is not a flag of megatron_grow.train (which {name} passes it to)"
                    for f in flags if f not in train_flags()]
        kind, name = "script", target
    if script_help is None or not flags:
        return []
    helptext = script_help(name)
    trainer = train_flags() if name in TAKES_TRAINER_FLAGS else set()
    return [f"{where}: {f} is not in `python {name} --help`" + (" nor a trainer flag" if trainer else "")
            for f in flags if f not in trainer and not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", helptext)]


def all_commands():
    return [c for page in PAGES for c in commands(page)]



def hand_table_flags(page: str, md: str | None = None) -> list[tuple[int, str]]:
    """(line, flag) of the first column of every hand-written table headed `| flag | ...` (outside the
    generated blocks): the trainer's flags, explained at more length than --help."""
    md = FLAGS_BLOCK.sub(lambda m: re.sub(r"[^\n]", "", m.group(0)), split_fences(read(page) if md is None else md)[0])
    out, in_table = [], False
    for n, line in enumerate(md.split("\n"), 1):
        if re.match(r"^\|\s*flag\s*\|", line):
            in_table = True
        elif in_table and line.startswith("|") and not re.match(r"^\|[\s:|-]+$", line):
            first = re.split(r"(?<!\\)\|", line)[1]
            out += [(n, "--" + f) for f in re.findall(r"--(?:\[no-\])?([A-Za-z0-9][\w-]*)", first)]
        elif not line.startswith("|"):
            in_table = False
    return out

# ---- flag tables ------------------------------------------------------------------------------------------


def flag_blocks() -> list[tuple[str, str, str]]:
    """(page, group, the block's text) of every <!-- flags:GROUP --> ... <!-- /flags --> block."""
    return [(page, m.group(1), m.group(2)) for page in PAGES for m in FLAGS_BLOCK.finditer(read(page))]


def write_flag_tables() -> None:
    from megatron_grow import config

    for page in PAGES:
        md = read(page)
        new = FLAGS_BLOCK.sub(lambda m: f"<!-- flags:{m.group(1)} -->\n\n{config.flag_table(m.group(1))}\n"
                                        "<!-- /flags -->", md)
        if new != md:
            with open(os.path.join(ROOT, page), "w", encoding="utf-8") as f:
                f.write(new)
            print(f"wrote the flag tables of {page}")


# ---- tests ------------------------------------------------------------------------------------------------


def test_links_and_anchors_resolve():
    assert len(PAGES) > 1, PAGES
    problems = [p for page in PAGES for p in broken_links(page)]
    assert not problems, "\n".join(problems)


def test_commands_name_existing_files_and_trainer_flags():
    """Files of every command; flags of the trainer and of the bash scripts that pass them to it."""
    cmds = all_commands()
    assert any(p[1] == "megatron_grow.train" for _, p in cmds) and any(p[0] == "script" for _, p in cmds)
    for script in TAKES_TRAINER_FLAGS:  # that table stays true
        assert "parse_known_args" in read(script), script
    problems = [p for where, prog in cmds for p in command_problems(where, prog)]
    assert not problems, "\n".join(problems)


def test_script_commands_use_flags_the_scripts_accept():
    """Each python script a command runs (directly or through a bash script) accepts the flags it is
    passed, by its own --help (one process per script)."""
    problems = [p for where, prog in all_commands() for p in command_problems(where, prog, script_help)]
    assert not problems, "\n".join(problems)


def test_flag_tables_equal_the_parser():
    from megatron_grow import config

    blocks = flag_blocks()
    assert sorted(g for _, g, _ in blocks) == sorted(config.GROUPS), "each flag group's table, once: " + str(
        [(p, g) for p, g, _ in blocks])
    stale = [f"{page}: <!-- flags:{g} -->" for page, g, text in blocks
             if text.strip("\n") != config.flag_table(g).strip("\n")]
    assert not stale, ("flag tables differ from config.flag_table(); regenerate them with "
                       "`python tests/test_docs.py --write-flag-tables`:\n" + "\n".join(stale))


def test_hand_written_flag_tables_name_trainer_flags():
    rows = [(page, n, f) for page in PAGES for n, f in hand_table_flags(page)]
    assert len(rows) > 20, rows
    unknown = [f"{page}:{n}: {f}" for page, n, f in rows if f not in train_flags()]
    assert not unknown, "not flags of megatron_grow.train:\n" + "\n".join(unknown)


def test_readme_is_short():
    n = read("README.md").count("\n")
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}: details go to docs/)"


def test_the_checks_catch_what_they_should():
    """The extractors on made-up pages: a broken link, a missing anchor, an unknown flag, and the shell
    forms commands take (continuations, env prefixes, comments, placeholders, inline spans)."""
    md = ("# Top\n\n## A heading: `with/code.py`\n\n## A heading: `with/code.py`\n\n"
          "[ok](#a-heading-withcodepy-1) [ok](README.md#megatron-grow) [bad](#nope) [bad](no/such.md)\n"
          "![bad image](benchmarks/results/none.png) `[not a link](nowhere.md)` [web](https://example.com/x)\n\n"
          "```bash\nNPROC=4 bash scripts/run.sh --train-iters 5 \\\n   --no-such-flag 3   # a comment --no-flag\n"
          "python tools/plot_metrics.py RUN/metrics.jsonl [--out F.png] && python -m pip install x\n"
          "torchrun --nproc_per_node 2 -m megatron_grow.train ... --lr 1e-3 --lr-decay=wsd --bogus\n"
          "bash scripts/nothere.sh\n```\n\nInline: `python tools/plan_growth.py --fixed A\n--t-mix 9`.\n")
    table = "| flag | meaning |\n|---|---|\n| `--lr`, `--[no-]bf16` | a --not-this |\n| `--no-such` | x |\n\nafter\n"
    assert hand_table_flags("README.md", table) == [(3, "--lr"), (3, "--bf16"), (4, "--no-such")]
    assert sorted(anchors(md)) == ["a-heading-withcodepy", "a-heading-withcodepy-1", "top"]
    problems = broken_links("README.md", md)
    assert len(problems) == 3 and "#nope" in problems[0] and "no/such.md" in problems[1], problems
    assert "benchmarks/results/none.png" in problems[2]
    cmds = commands("README.md", md)
    assert [p for _, p in cmds] == [
        ("bash", "scripts/run.sh", ["--train-iters", "5", "--no-such-flag", "3"]),
        ("script", "tools/plot_metrics.py", ["RUN/metrics.jsonl", "--out", "F.png"]),
        ("module", "megatron_grow.train", ["...", "--lr", "1e-3", "--lr-decay=wsd", "--bogus"]),
        ("bash", "scripts/nothere.sh", []),
        ("script", "tools/plan_growth.py", ["--fixed", "A", "--t-mix", "9"])]
    found = [p for where, prog in cmds for p in command_problems(where, prog)]
    assert [re.sub(r"^.*: ", "", p) for p in found] == [
        "--no-such-flag is not a flag of megatron_grow.train (which scripts/run.sh passes it to)",
        "--lr-decay is not a flag of megatron_grow.train", "--bogus is not a flag of megatron_grow.train",
        "no file scripts/nothere.sh"], found


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="The docs' flag tables (the checks themselves run under pytest).")
    ap.add_argument("--write-flag-tables", action="store_true",
                    help="rewrite every <!-- flags:GROUP --> block from config.flag_table(GROUP)")
    if ap.parse_args().write_flag_tables:
        sys.path.insert(0, ROOT)
        write_flag_tables()
    else:
        ap.print_help()
