#!/usr/bin/env bash
# Run `push2 profile test -json` on every built plugin with its own cases: the
# same runner for every SDK language, as CI must (sdk/ABI.md §13). The JSON
# reports are read by scripts/profile-test-report (Go, no other tool needed),
# which prints each plugin's summary, the failing cases and a total, and
# fails if any case fails or any plugin does not run.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/push2 ./cmd/push2
reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT
for wasm in plugins/build/*.wasm; do
	name="$(basename "$wasm" .wasm)"
	# A failing plugin exits 1 with its report written: the reader decides.
	bin/push2 profile test -json "$wasm" >"$reports/$name.json" 2>"$reports/$name.stderr" || true
done
go run ./scripts/profile-test-report "$reports"/*.json
