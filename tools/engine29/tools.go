//go:build tools

// Package engine29 pins Docker Engine 29 (moby v2, with its containerd and
// runc), the second engine the end-to-end tests run against beside
// Debian's dockerd 20.10: built from the Go module proxy by
// scripts/engine29.sh. It is a module of its own so that the project's
// go.mod does not carry the engine's dependencies.
package engine29

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/moby/moby/v2/cmd/dockerd"
	_ "github.com/opencontainers/runc"
)
