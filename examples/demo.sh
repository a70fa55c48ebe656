#!/usr/bin/env bash
# make demo: install what is missing (Debian's prosody, prosody-modules),
# then run the whole stack on 127.0.0.1 and show a push arriving.
# Extra arguments go to the demo: -keep, -v, -plain.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec go run ./examples/demo "$@"
