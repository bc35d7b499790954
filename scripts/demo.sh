#!/usr/bin/env bash
# Build the example components and show the host running, calling and
# inspecting each of them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> building the example components (wasm32-wasip2)"
cargo build --quiet --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml \
    --target-dir target/guests -p echo -p counter -p hello-http -p hello-cli
echo "==> building airssys-wasm"
cargo build --quiet --bin airssys-wasm

aw=target/debug/airssys-wasm
wasm=target/guests/wasm32-wasip2/release
show() { echo; echo "\$ airssys-wasm $*"; "$aw" "$@"; }

show inspect "$wasm/echo.wasm"
echo; echo "\$ echo 'hello, components' | airssys-wasm call echo.wasm --input - --content-type text/plain"
echo 'hello, components' | "$aw" call "$wasm/echo.wasm" --input - --content-type text/plain
echo; echo "\$ echo '{\"n\": 1}' | airssys-wasm call echo.wasm --input - --json"
echo '{"n": 1}' | "$aw" call "$wasm/echo.wasm" --input - --content-type application/json --json

show inspect "$wasm/counter.wasm"
show call "$wasm/counter.wasm" --allow system-call:state; echo

# The same components from a manifest: built on use, with the grants and
# limits written there.
export CARGO_TARGET_DIR=target/guests
show call --manifest examples/airssys.toml counter; echo
unset CARGO_TARGET_DIR

show inspect "$wasm/hello-cli.wasm"
show run "$wasm/hello-cli.wasm" -- one two three

show inspect "$wasm/hello_http.wasm"
show call "$wasm/hello_http.wasm" --path /greetings
show compile "$wasm/hello_http.wasm"
echo
echo "Done. Try: $aw --help"
