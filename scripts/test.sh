#!/usr/bin/env bash
# Set up and run every test: the runtime, the SDK (with its compile-fail
# cases), the CLI end to end. Guest components are built from source by the
# test build (crates/test-guests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace "$@"
# The crash test kills a child at each crash point: its own feature.
# (--workspace keeps the features of the build above: only our crates rebuild)
cargo test --workspace --features airssys-wasm-deploy/failpoints --test crash "$@"
