// Package rotate writes log records to files that rotate by size exactly as
// Docker's json-file driver rotates them (<name>, <name>.1 … <name>.N, gzip
// for rotated files on request), and reads them back for "docker logs":
// tail, since/until and follow across rotations and into compressed files.
//
// It knows the json-file record format but nothing about Docker's plugin
// protocol.
package rotate
