#!/usr/bin/env bash
# make demo: install what is missing (Debian's prosody and prosody-modules,
# Prosody 13 from bookworm-backports in a private root), then run the whole
# stack on 127.0.0.1 and show a push arriving. Prosody 13 by default.
# Extra arguments go to the demo: -keep, -v, -plain, -prosody012, -ejabberd,
# -webpush.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec go run ./examples/demo "$@"
