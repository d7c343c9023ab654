#!/usr/bin/env bash
# Everything that needs a GPU in one call of at most 8 minutes (benchmarks/gpu_check.py says what);
# without CUDA, or with --reduced, the same sections at toy sizes on CPU (CI).
cd "$(dirname "$0")/.." || exit 1
timeout 480 python benchmarks/gpu_check.py "$@"
rc=$?
if [ "$rc" -eq 124 ]; then
    echo "gpu_check.sh: stopped after its 480 s limit; the sections finished so far are in the" \
         "gpu_check_<device>.json/.md it writes after each section (--out, default benchmarks/results)" >&2
fi
exit "$rc"
