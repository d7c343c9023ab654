#!/usr/bin/env bash
# Install what is missing (with the dev extras), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
exec "${PYTHON:-python3}" -m pytest tests -q -p no:cacheprovider "$@"
