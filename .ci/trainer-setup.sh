#!/usr/bin/env bash
# CI: the real consumers of the exports, for the tests only (issue 11).
#
# - TRL, transformers, tokenizers, accelerate and a CPU torch, into the active venv: the SFT
#   lines are rendered through TRL's chat templates and one SFTTrainer step runs on them.
#   torch is pinned to the CPU wheel this machine kind serves (plain `torch` pulls CUDA GBs).
# - harbor (ATIF models), in its own venv .venv-harbor: it needs Python >= 3.12 and CI's
#   Python is 3.11; the ATIF tests validate exported files with it in a subprocess.
# Fails loudly (non-zero) when an install fails: with CI=true those tests must run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[trainer-setup] $*"; }
start=$(date +%s)

log "installing torch==2.13.0 transformers==5.24.0 trl==1.16.0 tokenizers==0.23.3 accelerate==1.15.0"
pip install -q torch==2.13.0 transformers==5.24.0 trl==1.16.0 tokenizers==0.23.3 accelerate==1.15.0

find_py312() {
    local c
    for c in python3.13 python3.12; do
        if command -v "$c" >/dev/null && "$c" -c 'import sys, venv; assert sys.version_info >= (3, 12)' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    for c in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python; do
        if [ -x "$c" ]; then echo "$c"; return 0; fi
    done
    return 1
}

if [ -x .venv-harbor/bin/python ] && .venv-harbor/bin/python -c 'import harbor.models.trajectories' 2>/dev/null; then
    log "harbor already in .venv-harbor"
else
    if ! PY=$(find_py312); then
        log "no Python >= 3.12 found for harbor (it requires >= 3.12): the ATIF tests cannot run"
        exit 1
    fi
    # Only harbor's trajectory models are used (harbor.models.trajectories, pydantic models):
    # the package itself, pinned, with the one dependency those models import (pydantic, as
    # harbor requires it). Its full dependency tree (a whole evaluation framework) would add
    # minutes to CI for code the tests never load. A harbor release whose models import more
    # fails the import check below, loudly.
    log "harbor==0.25.0 (trajectory models: --no-deps + pydantic>=2.12) into .venv-harbor ($PY)"
    rm -rf .venv-harbor
    "$PY" -m venv .venv-harbor
    .venv-harbor/bin/pip install -q --no-deps harbor==0.25.0
    .venv-harbor/bin/pip install -q 'pydantic>=2.12.0,<3'
    .venv-harbor/bin/python -c 'import harbor.models.trajectories'
fi
log "done in $(( $(date +%s) - start ))s"
