//go:build tools

// Package versitygw pins Versity's S3 gateway, the S3 server that the
// end-to-end tests of the S3 destination run against: a real
// implementation, strict like AWS, built from the Go module proxy by
// scripts/s3.sh. It is a module of its own so that the project's go.mod
// does not carry the gateway's dependencies.
package versitygw

import _ "github.com/versity/versitygw/cmd/versitygw"
