#!/usr/bin/env bash
# The main job. For now: the pipeline in-process on the sample registration.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== push2 simulate: a message for an offline device"
go run ./cmd/push2 simulate --enable examples/simulate/enable.xml --stanza examples/simulate/message.xml --explain
