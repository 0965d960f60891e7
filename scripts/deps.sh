#!/usr/bin/env bash
# deps.sh installs the Debian packages that building and testing logferry
# need, and only those that are missing: make, gcc (go test -race needs
# cgo), docker.io (dockerd and the docker CLI), busybox-static (the test
# image), docker-registry (plugin push/install tests), qemu-user-static
# (the arm64 unit tests), and libseccomp-dev and pkg-config (runc for the
# second engine). Idempotent.
set -euo pipefail

missing=()
add() {
	local p
	for p in "${missing[@]}"; do [[ $p == "$1" ]] && return 0; done
	missing+=("$1")
}
have() { command -v "$1" >/dev/null 2>&1; }
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

have make || add make
have gcc || add gcc
# Any dockerd/docker pair will do; installing docker.io next to docker-ce
# would conflict.
have dockerd && have docker || add docker.io
# The test image needs a static busybox, which only this package ships.
installed busybox-static || add busybox-static
have docker-registry || add docker-registry
have qemu-aarch64-static || add qemu-user-static
# runc for Docker Engine 29 (scripts/engine29.sh) is built with seccomp.
installed libseccomp-dev || add libseccomp-dev
have pkg-config || add pkg-config

if ((${#missing[@]} == 0)); then
	echo "deps: make, gcc, docker, busybox-static, docker-registry, qemu-user-static, libseccomp-dev and pkg-config are present"
	exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y "${missing[@]}"
