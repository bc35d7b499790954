#!/usr/bin/env bash
# Set up, build the example components and the host, deploy the examples
# into a state directory, and run the host until Ctrl-C:
#   echo       a handler component on /echo
#   hello-http a wasi:http/proxy component on /hello
#   counter    a handler that keeps state, on /counter
# Environment: AIRSSYS_STATE_DIR (default target/demo-state), LISTEN
# (default 127.0.0.1:8080), ADMIN_LISTEN (default 127.0.0.1:8081).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> building the example components (wasm32-wasip2)"
cargo build --quiet --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml \
    --target-dir target/guests -p echo -p counter -p hello-http
echo "==> building airssys-wasm"
cargo build --quiet --bin airssys-wasm

aw=target/debug/airssys-wasm
wasm=target/guests/wasm32-wasip2/release
state=${AIRSSYS_STATE_DIR:-target/demo-state}
listen=${LISTEN:-127.0.0.1:8080}
admin=${ADMIN_LISTEN:-127.0.0.1:8081}
export AIRSSYS_STATE_DIR=$state
unset AIRSSYS_HOST

echo "==> publishing and deploying the examples into $state"
# Publishing the same bytes again does nothing; a component already active
# is left as it is.
active=$("$aw" status --json)
deploy() {
    local name=$1 version=$2 file=$3
    shift 3
    "$aw" publish "$wasm/$file" --name "$name" --version "$version" --allow-unsigned
    if grep -Eq "\"name\": ?\"$name\"" <<<"$active"; then
        echo "$name is already deployed"
    else
        "$aw" deploy "$name@$version" "$@"
    fi
}
deploy echo 0.1.0 echo.wasm --route /echo
deploy hello 0.1.0 hello_http.wasm --route /hello
deploy counter 0.1.0 counter.wasm --route /counter --allow system-call:state

cat <<EOT

==> try, from another terminal:
  curl -d 'hello, components' http://$listen/echo
  curl http://$listen/hello/there
  curl -X POST http://$listen/counter          # the count survives restarts
  curl http://$admin/metrics
  export AIRSSYS_HOST=http://$admin AIRSSYS_TOKEN=\$(cat $state/admin.token)
  $aw status                  # and publish, deploy, upgrade, rollback ... on the running host

EOT
exec "$aw" serve --listen "$listen" --admin-listen "$admin"
