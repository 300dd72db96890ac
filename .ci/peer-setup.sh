#!/usr/bin/env bash
# Test-only peers in their OWN virtualenvs (never the project's): mini-swe-agent 2.4.x, which
# tests/test_agent_parity.py drives side by side with agentdata-tui. Cached: a venv that already
# imports the right version is kept. The folder: $AGENTDATA_PEER_DIR, else ~/.cache/agentdata-tui/peers.
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1
PEER_DIR="${AGENTDATA_PEER_DIR:-$HOME/.cache/agentdata-tui/peers}"
PY="${PYTHON:-python3}"

make_peer() {  # make_peer NAME PIP_SPEC VERSION_PREFIX
    local dir="$PEER_DIR/$1"
    if "$dir/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('mini-swe-agent').startswith('$3') else 1)" 2>/dev/null; then
        echo "peer $1: cached in $dir"
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$PEER_DIR"
    "$PY" -m venv "$dir"
    "$dir/bin/pip" install -q "$2"
    "$dir/bin/python" -c "import minisweagent, importlib.metadata as m; print('peer $1:', m.version('mini-swe-agent'), 'in $dir')"
}

make_peer mswea-2.4 'mini-swe-agent>=2.4,<2.5' '2.4.'
