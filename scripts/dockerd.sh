#!/usr/bin/env bash
# dockerd.sh starts dockerd in the background unless a daemon already
# answers, and waits until it is ready. Its log goes to $BUILD_DIR/dockerd.log.
# There is no systemd on the build machines, so the daemon is started by hand
# and outlives this script. Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh

build_dir=${BUILD_DIR:-build}
ceiling=${DOCKERD_TIMEOUT:-90} # seconds
# The daemon listens where the docker CLI looks for it.
host=${DOCKER_HOST:-unix:///var/run/docker.sock}
# Extra flags for dockerd, e.g. DOCKERD_FLAGS="--storage-driver vfs".
read -r -a flags <<<"${DOCKERD_FLAGS:-}"

# A daemon that accepts connections but does not answer (a hung dockerd)
# must fail the run quickly, not hold it until CI's time runs out.
answers() { timeout 20 docker info >/dev/null 2>&1; }

if answers; then
	echo "dockerd: already running"
	exit 0
fi
if [[ -S /var/run/docker.sock ]] && pgrep -x dockerd >/dev/null; then
	echo "dockerd: running but not answering within 20s; restart it (see its log)" >&2
	exit 1
fi

mkdir -p "$build_dir"
log=$build_dir/dockerd.log
echo "dockerd: starting on $host, log in $log"
setsid nohup dockerd --host "$host" "${flags[@]}" \
	>>"$log" 2>&1 </dev/null &
pid=$!

wait_ready dockerd "$pid" "$log" "$ceiling" answers
