#!/usr/bin/env bash
# registry.sh starts Debian's docker-registry (distribution 2.x) on $REGISTRY
# (default 127.0.0.1:5000) with its own configuration and storage under
# $BUILD_DIR/registry, unless something there already answers the registry
# API. dockerd treats 127.0.0.0/8 as an insecure registry, so no TLS is
# needed. A $REGISTRY that is not on loopback is left alone. Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

addr=${REGISTRY:-127.0.0.1:5000}
build_dir=${BUILD_DIR:-build}
ceiling=${REGISTRY_TIMEOUT:-30} # seconds
host=${addr%:*}
port=${addr##*:}

# answers reports whether GET /v2/ on addr returns 200, using bash's
# /dev/tcp so that no HTTP client has to be installed.
answers() {
	(
		exec 3<>"/dev/tcp/$host/$port" || exit 1
		printf 'GET /v2/ HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3
		IFS= read -r -t 5 status <&3 || exit 1
		[[ $status == HTTP/1.?" 200"* ]]
	) 2>/dev/null
}

case $host in
127.* | localhost) ;;
*)
	echo "registry: $addr is not on loopback; leaving it alone"
	exit 0
	;;
esac
if answers; then
	echo "registry: $addr already answers"
	exit 0
fi

dir=$(pwd)/$build_dir/registry
mkdir -p "$dir/data"
cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
CONFIG
echo "registry: starting on $addr, log in $dir/registry.log"
setsid nohup docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$dir/registry.pid" # for "make clean", which deletes the storage

wait_ready registry "$pid" "$dir/registry.log" "$ceiling" answers
