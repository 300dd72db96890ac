#!/usr/bin/env bash
# The Ray executor's tests (tests/test_ray_executor.py) must run in CI, not skip: install the
# optional [ray] extra into the active venv. Called by .ci/run before the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -e '.[ray]'
python -c "import ray; print('ray', ray.__version__)"
