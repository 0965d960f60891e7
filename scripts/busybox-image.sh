#!/usr/bin/env bash
# busybox-image.sh builds the image the end-to-end tests run,
# $BUSYBOX_IMAGE (default logferry-busybox:latest), unless it exists: a
# rootfs with the static busybox from Debian's busybox-static at
# /usr/bin/busybox and a symlink for each of its applets, imported with
# "docker import" because no image can be pulled. Idempotent.
set -euo pipefail

image=${BUSYBOX_IMAGE:-logferry-busybox:latest}

if docker image inspect "$image" >/dev/null 2>&1; then
	echo "image: $image exists"
	exit 0
fi

bb=$(dpkg-query -L busybox-static | grep -E '/bin/busybox$' | head -n 1)
if [[ -z $bb || ! -x $bb ]]; then
	echo "image: busybox-static is not installed (run scripts/deps.sh)" >&2
	exit 1
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/usr/bin" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
ln -s usr/bin "$rootfs/bin"
ln -s usr/bin "$rootfs/sbin"
cp "$bb" "$rootfs/usr/bin/busybox"
n=0
for applet in $("$bb" --list); do
	[[ $applet == busybox ]] && continue
	ln -s busybox "$rootfs/usr/bin/$applet"
	n=$((n + 1))
done

echo "image: importing $image (busybox from $bb, $n applets)"
tar -C "$rootfs" -c . | docker import \
	--change 'ENV PATH=/usr/bin' \
	--change 'CMD ["sh"]' \
	- "$image" >/dev/null
echo "image: $image built"
