#!/usr/bin/env bash
# Install what is missing (with the dev extras), then run the test suite in two lanes: the tests that
# run in this process (minutes), then those that start processes (torchrun jobs, the CLI, scripts).
#   bash scripts/test.sh            lint (ruff, configured in pyproject.toml), then both lanes
#   bash scripts/test.sh lint       ruff only
#   bash scripts/test.sh fast       the in-process lane only
#   bash scripts/test.sh slow       the multi-process lane only
# Further arguments go to pytest (e.g. -k resume, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
PY=${PYTHON:-python3}
lane=all
case "${1:-}" in lint|fast|slow|all) lane=$1; shift ;; esac
# real tokenizer files (GPT-2, LLaMA-3, Mistral) for tests/test_tokenizers.py, fetched once into the cache
[ "$lane" = lint ] || "$PY" tools/fetch_test_tokenizers.py || echo "[test] tokenizer files not fetched (above): their tests skip"
pytest=("$PY" -m pytest tests -q -p no:cacheprovider "$@")
if [ "$lane" = all ] || [ "$lane" = lint ]; then
  echo "[test] lint: ruff check ."
  "$PY" -m ruff check .
  [ "$lane" = lint ] && exit 0
fi
if [ "$lane" = all ] || [ "$lane" = fast ]; then
  echo "[test] fast lane: in-process tests"
  start=$SECONDS
  "${pytest[@]}" -m "not multiprocess" || [ $? -eq 5 ]  # (5: -k selected nothing in this lane)
  echo "[test] fast lane: $((SECONDS - start)) s"
fi
if [ "$lane" = all ] || [ "$lane" = slow ]; then
  echo "[test] slow lane: tests that start processes"
  start=$SECONDS
  # two pytest workers, a test file each (its module fixtures stay in one worker): half the jobs are one
  # process, which leaves a core idle; MULTIPROCESS_WORKERS=1 runs them one after another
  # (longest files first: tests/conftest.py orders them, --no-loadscope-reorder keeps that order)
  "${pytest[@]}" -m multiprocess -n "${MULTIPROCESS_WORKERS:-2}" --dist loadfile --no-loadscope-reorder \
    --durations=20 || [ $? -eq 5 ]
  echo "[test] slow lane: $((SECONDS - start)) s"
fi
