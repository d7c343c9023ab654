from setuptools import find_packages, setup

setup(
    name="megatron-grow",
    version="0.1.0",
    description="Progressive depth training (zero/one-layer -> deep) on NVIDIA megatron-core",
    packages=find_packages(include=["megatron_grow", "megatron_grow.*"]),
    python_requires=">=3.10",
    # torch is installed first by scripts/install.sh (pinned, CPU build where there is no CUDA)
    # so that nothing here pulls an unpinned CUDA build.
    install_requires=[
        "megatron-core>=0.16,<0.17",
        "sentencepiece",
        "tokenizers",  # HuggingFaceTokenizer (tokenizer.json) and GPT2BPETokenizer
        "numpy",
        "psutil",  # dist_checkpointing.save needs it
        "tqdm",
        "xxhash",  # checkpoint checksums
    ],
    extras_require={
        # triton: kernel tests run on CPU under TRITON_INTERPRET=1
        "dev": ["pytest", "pytest-timeout", "pytest-xdist", "tensorboard", "matplotlib", "triton", "ruff>=0.17,<0.18",
                "transformers>=5,<6", "safetensors", "wandb>=0.31,<0.32",
                # tests/test_tokenizers.py: .parquet input, TikTokenizer and the GPT-2 reference (tiktoken)
                "pyarrow", "tiktoken"],
        # tools/export_hf.py
        "hf": ["transformers>=5,<6", "safetensors"],
        "gpu": ["transformer-engine[pytorch]", "nvidia-ml-py"],
        # (no deepspeed extra: training does not use it; benchmarks/deepspeed_zero.py, which measured 0.19.8
        # against --use-distributed-optimizer, installs it in a venv of its own, see docs/development.md "Benchmarks")
    },
)
