#!/usr/bin/env bash
# engine29.sh builds Docker Engine 29 (moby v2's dockerd, containerd and its
# runc shim, and runc with seccomp), pinned in tools/engine29/go.mod, from
# the Go module proxy, and starts it beside the host's dockerd unless it
# answers already: its own socket, data root, exec root, pid file and
# containerd, no bridge and no iptables, so that it touches neither the
# other engine nor the host's network. Docker 29 needs runc 1.2 or newer
# (Debian's 1.1.5 fails), hence runc from the same pin. The binaries are
# cached in $LOGFERRY_CACHE (default ~/.cache/logferry), outside the clone,
# so that only a fresh machine pays the build (5 to 10 minutes on 2 cores).
# Its log goes to $BUILD_DIR/engine29.log. It prints the engine's host;
# "engine29.sh bin" builds only, and prints the binaries' directory (for the
# tests that start a dockerd of their own).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

cache=${LOGFERRY_CACHE:-$HOME/.cache/logferry}
mod=tools/engine29/go.mod
version() { awk -v m="$1" '$1 == m {print $2} $1 == "require" && $2 == m {print $3}' "$mod" | head -n1; }
moby=$(version github.com/moby/moby/v2)
ctrd=$(version github.com/containerd/containerd/v2)
runc=$(version github.com/opencontainers/runc)
if [[ -z $moby || -z $ctrd || -z $runc ]]; then
	echo "engine29: versions missing from $mod" >&2
	exit 1
fi
bin=$cache/engine29-$moby-$ctrd-$runc
dir=${ENGINE29_DIR:-/var/lib/logferry-engine29}
run=${ENGINE29_RUN:-/run/logferry-engine29}
host=unix://$run/docker.sock
build_dir=${BUILD_DIR:-build}
log=$build_dir/engine29.log

if [[ ! -x $bin/dockerd || ! -x $bin/runc ]]; then
	echo "engine29: building dockerd $moby, containerd $ctrd, runc $runc into $bin (once per machine)" >&2
	mkdir -p "$bin.tmp"
	(cd tools/engine29 &&
		CGO_ENABLED=0 go build -trimpath -o "$bin.tmp/" \
			-ldflags "-X github.com/moby/moby/v2/dockerversion.Version=$moby -X github.com/moby/moby/v2/dockerversion.GitCommit=$moby" \
			github.com/moby/moby/v2/cmd/dockerd \
			github.com/containerd/containerd/v2/cmd/containerd \
			github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 &&
		CGO_ENABLED=1 go build -trimpath -tags seccomp -o "$bin.tmp/runc" github.com/opencontainers/runc)
	rm -rf "$bin"
	mv "$bin.tmp" "$bin"
fi
if [[ ${1:-} == bin ]]; then
	echo "$bin"
	exit 0
fi

answers() { DOCKER_HOST=$host docker version >/dev/null 2>&1; }
if answers; then
	echo "$host"
	exit 0
fi
mkdir -p "$dir" "$run" "$build_dir"
echo "engine29: starting on $host, log in $log" >&2
# Its own binaries first: dockerd starts the containerd, shim and runc it
# finds on PATH. No daemon.json: the host's is not for this engine.
PATH=$bin:$PATH setsid nohup dockerd --host "$host" \
	--config-file /dev/null \
	--data-root "$dir" --exec-root "$run/exec" --pidfile "$run/docker.pid" \
	--bridge none --iptables=false --ip6tables=false --ip-forward=false \
	--ip-masq=false --userland-proxy=false \
	>>"$log" 2>&1 </dev/null &
pid=$!
wait_ready engine29 "$pid" "$log" 60 answers
echo "$host"
