#!/usr/bin/env bash
# bubblewrap isolates the local sandbox's commands (DESIGN §6, issue 9): the isolation tests need
# it installed, not skipped. Debian's package; a no-op where bwrap is already there.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then
    echo "bubblewrap: $(bwrap --version)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends bubblewrap
echo "bubblewrap: $(bwrap --version)"
