#!/usr/bin/env bash
# s3.sh builds the real S3 server that the end-to-end tests of the S3
# destination start (each test its own, on a port of its own, so that it
# can stop and restart it): Versity's S3 gateway, versitygw, pinned in
# tools/versitygw/go.mod (a module of its own, so that the project's go.mod
# does not carry the gateway's dependencies) and built from the Go module
# proxy. The binary is cached in $LOGFERRY_CACHE (default
# ~/.cache/logferry), outside the clone, so that only a fresh machine pays
# the build (about 3 minutes on 2 cores). It prints the binary's path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cache=${LOGFERRY_CACHE:-$HOME/.cache/logferry}
version=$(awk '$1 == "require" && $2 == "github.com/versity/versitygw" {print $3}' tools/versitygw/go.mod)
if [[ -z $version ]]; then
	echo "s3: no versitygw version in tools/versitygw/go.mod" >&2
	exit 1
fi
bin=$cache/versitygw-$version

if [[ ! -x $bin ]]; then
	echo "s3: building versitygw $version into $bin (once per machine)" >&2
	mkdir -p "$cache"
	(cd tools/versitygw && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" github.com/versity/versitygw/cmd/versitygw)
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
