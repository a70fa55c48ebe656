#!/usr/bin/env bash
# Run `push2 profile test` on every built plugin with its own cases: the same
# runner for every SDK language, as CI must (sdk/ABI.md §13). Prints each
# plugin's summary and a total; fails if any case fails.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/push2 ./cmd/push2
passed=0 failed=0
for wasm in plugins/build/*.wasm; do
	out=$(bin/push2 profile test "$wasm" 2>&1) || true
	line=$(printf '%s\n' "$out" | tail -n 1)
	echo "$line"
	p=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
	f=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
	if [ -z "$p" ]; then
		printf '%s\n' "$out" >&2
		echo "profile-test-all: $wasm did not run" >&2
		exit 1
	fi
	passed=$((passed + p)) failed=$((failed + f))
done
echo "plugins: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
