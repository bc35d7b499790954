#!/usr/bin/env bash
# Make sure the pinned toolchain and the wasm32-wasip2 target are installed.
# rust-toolchain.toml names both; rustup installs the toolchain on first use,
# and this adds the target where an older rustup did not.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; install Rust with rustup first" >&2
    exit 1
fi
if command -v rustup >/dev/null 2>&1; then
    toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
    rustup toolchain install "$toolchain" --profile minimal --component clippy,rustfmt --target wasm32-wasip2 >/dev/null
    if ! rustup target list --installed --toolchain "$toolchain" | grep -qx wasm32-wasip2; then
        rustup target add --toolchain "$toolchain" wasm32-wasip2
    fi
fi
