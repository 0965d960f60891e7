# The rootfs of the logferry plugin. Nothing is pulled: the image holds only
# the static binary and the empty directories the plugin uses.
#
# The build context is a directory that contains just the binary, named
# "logferry" (make install prepares build/context):
#   docker build -f Dockerfile build/context
FROM scratch
COPY logferry /logferry
# There is no shell in a scratch image to run mkdir; WORKDIR creates each
# directory: the socket directory, a temp directory and the mount point of
# the "root" bind mount.
WORKDIR /run/docker/plugins
WORKDIR /tmp
WORKDIR /var/lib/logferry
WORKDIR /
ENTRYPOINT ["/logferry"]
