# logferry: build, test and package the Docker logging plugin.
#
# Every variable below can be overridden on the command line, e.g.
#   make install PLUGIN=logferry:dev
#   make push REGISTRY=registry.example.com:5000 TAG=v1.2.0
#   make push REGISTRY=registry.example.com:5000 TAG=v1.2.0 ARCH=arm64

GO           ?= go
DOCKER       ?= docker
# Name of the installed plugin; containers use it as --log-driver
# (":latest" may be left out there).
PLUGIN       ?= logferry:latest
# Where "make push" sends the plugin: $(REGISTRY)/$(PLUGIN_REPO):$(TAG).
REGISTRY     ?= 127.0.0.1:5000
PLUGIN_REPO  ?= logferry
TAG          ?= latest
# The release: with TAG=vX.Y.Z, X.Y.Z; with any other TAG (latest, e2e-…)
# the next release (the VERSION file) marked as a development build of
# this commit. It is in
# "logferry --version", the plugin's log and its description.
VERSION      ?= $(if $(filter v0% v1% v2% v3% v4% v5% v6% v7% v8% v9%,$(TAG)),$(TAG:v%=%),$(shell cat VERSION)-dev+$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown))
# The architecture the plugin is built for: amd64 or arm64. Docker plugins
# have no multi-architecture manifests: each is pushed under its own tag,
# TAG for amd64 and TAG-ARCH for the others.
ARCH         ?= $(shell $(GO) env GOARCH)
BIN          ?= bin/logferry
# Settings (KEY=value ...) "make install" gives the plugin besides its root.
PLUGIN_SETTINGS ?=
BUILD_DIR    ?= build
PLUGIN_DIR   ?= $(BUILD_DIR)/plugin
# Throw-away image built from the Dockerfile, exported as the rootfs and
# removed again; tagged after the build directory, so that builds from two
# checkouts on one dockerd do not take each other's image.
ROOTFS_IMAGE ?= logferry-rootfs:$(shell printf %s '$(abspath $(BUILD_DIR))' | md5sum | cut -c1-12)
# Host directory behind the plugin's "root" mount (config.json's default);
# "make install" creates it and sets the mount's source to it.
HOST_ROOT    ?= /var/lib/logferry
# Image the end-to-end tests run (built by scripts/busybox-image.sh).
BUSYBOX_IMAGE ?= logferry-busybox:latest
# The S3 server the end-to-end tests start (scripts/s3.sh builds it once
# per machine into LOGFERRY_CACHE, outside the clone).
LOGFERRY_CACHE ?= $(HOME)/.cache/logferry
VERSITYGW    ?= $(LOGFERRY_CACHE)/versitygw-$(shell awk '$$1 == "require" && $$2 == "github.com/versity/versitygw" {print $$3}' tools/versitygw/go.mod)
# Ceilings for a hung test binary; CI must finish well under 15 minutes.
TEST_TIMEOUT ?= 5m
E2E_TIMEOUT  ?= 20m
# The e2e tests mostly wait on dockerd, so run more of them than there are CPUs.
E2E_FLAGS    ?= -parallel 8

export BUILD_DIR REGISTRY BUSYBOX_IMAGE

SHELL := bash
.SHELLFLAGS := -euo pipefail -c

PUSH_REF := $(REGISTRY)/$(PLUGIN_REPO):$(TAG)$(if $(filter-out amd64,$(ARCH)),-$(ARCH))

# remove_plugin force-disables and removes the plugin named $(1), if any.
define remove_plugin
	@if $(DOCKER) plugin inspect $(1) >/dev/null 2>&1; then \
		echo "$(DOCKER) plugin disable -f $(1); $(DOCKER) plugin rm -f $(1)"; \
		$(DOCKER) plugin disable -f $(1) >/dev/null 2>&1 || true; \
		$(DOCKER) plugin rm -f $(1) >/dev/null; \
	fi
endef

# Targets share the docker daemon and the plugin; never run them in parallel.
.NOTPARALLEL:
.PHONY: build test e2e check prepare plugin install push clean fmt vet

## build: the static plugin binary $(BIN), for $(ARCH)
build:
	@echo "==> build $(BIN) $(VERSION) for linux/$(ARCH)"
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -ldflags '-X main.version=$(VERSION)' -o $(BIN) ./cmd/logferry

## engine: check that a Docker engine answers, or say what to do
# The plugin is assembled and installed through the engine.
.PHONY: engine
engine:
	@$(DOCKER) info --format '{{.ServerVersion}}' >/dev/null 2>&1 || { \
		echo "make: no Docker engine answers at $${DOCKER_HOST:-unix:///var/run/docker.sock}." >&2; \
		echo "  Start one (systemctl start docker), point DOCKER_HOST at one, or start a" >&2; \
		echo "  throw-away one with: bash scripts/dockerd.sh (its log: $(BUILD_DIR)/dockerd.log)." >&2; \
		exit 1; }

## test: unit tests (the e2e package is behind the "e2e" build tag), those
## of the benchmark harness (behind "bench"; they need no dockerd), and
## rotate's again with "purego", which swaps its assembly for portable Go
test:
	@echo "==> unit tests"
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -tags bench ./bench/...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -tags purego ./rotate

## test-arm64: the unit tests built for linux/arm64 and run under
## qemu-user (from Debian's qemu-user-static), without -race (which needs
## cgo for the target)
.PHONY: test-arm64
test-arm64:
	@echo "==> unit tests for linux/arm64 under qemu-aarch64-static"
	CGO_ENABLED=0 GOARCH=arm64 LOGFERRY_TEST_EXEC=qemu-aarch64-static \
		$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -exec qemu-aarch64-static ./...

## prepare: Debian packages, dockerd, local registry and the test image
prepare:
	@echo "==> prepare the test environment"
	bash scripts/deps.sh
	bash scripts/dockerd.sh
	bash scripts/registry.sh
	bash scripts/busybox-image.sh
	LOGFERRY_CACHE=$(LOGFERRY_CACHE) bash scripts/s3.sh

## plugin: assemble $(PLUGIN_DIR)/{config.json,rootfs/} from the Dockerfile
plugin: engine build
	@echo "==> assemble $(PLUGIN_DIR) (docker build of Dockerfile, exported as rootfs)"
	rm -rf $(PLUGIN_DIR) $(BUILD_DIR)/context
	mkdir -p $(PLUGIN_DIR)/rootfs $(BUILD_DIR)/context
	cp $(BIN) $(BUILD_DIR)/context/logferry
	DOCKER_BUILDKIT=0 $(DOCKER) build --quiet -f Dockerfile -t $(ROOTFS_IMAGE) $(BUILD_DIR)/context
	id=$$($(DOCKER) create $(ROOTFS_IMAGE)); \
		trap '$(DOCKER) rm $$id >/dev/null; $(DOCKER) image rm $(ROOTFS_IMAGE) >/dev/null' EXIT; \
		$(DOCKER) export $$id | tar -x -C $(PLUGIN_DIR)/rootfs
	sed 's/"description": "logferry: /"description": "logferry $(VERSION) ($(ARCH)): /' config.json > $(PLUGIN_DIR)/config.json

## install: (re)create and enable the plugin $(PLUGIN) on the local dockerd
# "--timeout 0": dockerd's HTTP client to the plugin otherwise gives up after
# 30 s, which cuts every "docker logs --follow" at 30 s.
# docker-containers.source follows the engine's data root, so that the
# files of removed containers are removed whatever --data-root says.
install: plugin
	@echo "==> install plugin $(PLUGIN)"
	$(call remove_plugin,$(PLUGIN))
	mkdir -p -m 0750 $(HOST_ROOT)
	$(DOCKER) plugin create $(PLUGIN) $(PLUGIN_DIR)
	$(DOCKER) plugin set $(PLUGIN) root.source=$(HOST_ROOT) \
		docker-containers.source=$$($(DOCKER) info --format '{{.DockerRootDir}}')/containers $(PLUGIN_SETTINGS)
	$(DOCKER) plugin enable --timeout 0 $(PLUGIN)

## push: push the plugin to $(REGISTRY) as $(PLUGIN_REPO):$(TAG) (amd64) or
## $(PLUGIN_REPO):$(TAG)-$(ARCH)
# The local copy named after the registry exists only to be pushed; it is
# removed afterwards so that it does not shadow "docker plugin install".
push: plugin
	@echo "==> push plugin $(PUSH_REF)"
	bash scripts/registry.sh
	$(call remove_plugin,$(PUSH_REF))
	$(DOCKER) plugin create $(PUSH_REF) $(PLUGIN_DIR)
	$(DOCKER) plugin push $(PUSH_REF)
	$(DOCKER) plugin rm -f $(PUSH_REF)

# e2e_run runs the end-to-end suite on the engine DOCKER_HOST names, where
# the plugin assembled in $(1) is installed, with the environment $(2)
# added (the engine's binaries, for the tests that start a dockerd).
e2e_run = LOGFERRY_E2E_PLUGIN=$(PLUGIN) LOGFERRY_E2E_IMAGE=$(BUSYBOX_IMAGE) \
	LOGFERRY_E2E_REGISTRY=$(REGISTRY) LOGFERRY_E2E_PLUGIN_DIR=$(abspath $(1)) \
	LOGFERRY_E2E_VERSITYGW=$(VERSITYGW) $(2) \
		$(GO) test -race -count=1 -tags e2e -v -timeout $(E2E_TIMEOUT) $(E2E_FLAGS) ./e2e

## e2e: end-to-end tests against the real engine, with the plugin installed
e2e: prepare install
	@echo "==> end-to-end tests (plugin $(PLUGIN))"
	$(call e2e_run,$(PLUGIN_DIR))

## e2e-engine29: the end-to-end tests again, against Docker Engine 29 built
## from the Go module proxy (scripts/engine29.sh) and running beside the
## first engine, with the plugin installed there too
ENGINE29_ROOT ?= /var/lib/logferry-e29
.PHONY: e2e-engine29
e2e-engine29: prepare
	@echo "==> end-to-end tests on Docker Engine 29"
	host=$$(LOGFERRY_CACHE=$(LOGFERRY_CACHE) bash scripts/engine29.sh); \
	engine_bin=$$(LOGFERRY_CACHE=$(LOGFERRY_CACHE) bash scripts/engine29.sh bin); \
	export DOCKER_HOST=$$host; \
	bash scripts/busybox-image.sh; \
	$(MAKE) --no-print-directory install BUILD_DIR=$(BUILD_DIR)/engine29 BIN=$(BUILD_DIR)/engine29/logferry HOST_ROOT=$(ENGINE29_ROOT); \
	$(call e2e_run,$(BUILD_DIR)/engine29/plugin,LOGFERRY_E2E_ENGINE_BIN=$$engine_bin)

## check: everything CI runs: prepare, unit tests (also for arm64),
## end-to-end tests on dockerd 20.10, then on Docker Engine 29
check: prepare test test-arm64 e2e e2e-engine29
	@echo "==> check passed"

## clean: remove bin/, build/ and the plugin; stop the registry that
## scripts/registry.sh started with its storage in build/
clean:
	@echo "==> clean"
	$(call remove_plugin,$(PLUGIN))
	@pidfile=$(BUILD_DIR)/registry/registry.pid; \
	if [[ -f $$pidfile ]] && grep -qs docker-registry /proc/$$(cat $$pidfile)/cmdline; then \
		echo "kill $$(cat $$pidfile) (registry serving $(BUILD_DIR)/registry)"; \
		kill $$(cat $$pidfile); \
	fi
	rm -rf bin $(BIN) $(BUILD_DIR)

## fmt: gofmt every Go file
fmt:
	@echo "==> gofmt"
	gofmt -w .

## vet: go vet, including the e2e package
vet:
	@echo "==> go vet"
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e
	$(GO) vet -tags bench ./bench/...
	$(GO) vet -tags purego ./rotate

## bench: Go benchmarks, then the end-to-end benchmark against Docker's own
## drivers (bench/); prints Markdown tables. Needs root and dockerd.
# The plugins it measures get their own names and build directory, so that
# it leaves $(PLUGIN) alone.
BENCH_PLUGIN   ?= logferry-bench:latest
DRAIN_PLUGIN   ?= logferry-drain:latest
BENCH_DIR      ?= $(BUILD_DIR)/bench
# Root mount of $(BENCH_PLUGIN): its own, so that the files and buffers of
# the benchmark's containers never mix with those of other installs.
BENCH_ROOT     ?= /var/lib/logferry-bench
# Flags of the harness, e.g. BENCH_FLAGS="-runs 5 -raw"; see README.
BENCH_FLAGS    ?=
# dockerd's API socket the harness measures: DOCKER_HOST's when it is a
# unix socket (e.g. Engine 29's, see scripts/engine29.sh).
BENCH_SOCKET   ?= $(if $(filter unix://%,$(DOCKER_HOST)),$(DOCKER_HOST:unix://%=%),/var/run/docker.sock)
# Packages whose testing.B benchmarks run first; empty to skip them.
GO_BENCH_PKGS  ?= ./rotate ./driver ./forward/... ./bench
GO_BENCH_FLAGS ?= -run '^$$' -bench . -benchmem
.PHONY: bench
bench:
	@echo "==> prepare the benchmark: dockerd, $(BUSYBOX_IMAGE), plugins $(BENCH_PLUGIN) and $(DRAIN_PLUGIN)"
	bash scripts/dockerd.sh
	bash scripts/busybox-image.sh
	@# What earlier runs left under the benchmark's root (the disk buffer of
	@# an interrupted run, whose receiver is gone) would be retried by the
	@# plugin during every run: start from an empty one.
	$(call remove_plugin,$(BENCH_PLUGIN))
	rm -rf $(BENCH_ROOT)
	@# The S3 receiver checks no signature, but the plugin signs: any keys.
	$(MAKE) --no-print-directory install PLUGIN=$(BENCH_PLUGIN) BUILD_DIR=$(BENCH_DIR) \
		BIN=$(BENCH_DIR)/logferry HOST_ROOT=$(BENCH_ROOT) \
		PLUGIN_SETTINGS="S3_ACCESS_KEY_ID=bench S3_SECRET_ACCESS_KEY=bench-secret"
	rm -rf $(BENCH_DIR)/drain
	mkdir -p $(BENCH_DIR)/drain/rootfs/run/docker/plugins
	CGO_ENABLED=0 $(GO) build -tags bench -trimpath -o $(BENCH_DIR)/drain/rootfs/drainplugin ./bench/drainplugin
	cp bench/drainplugin/config.json $(BENCH_DIR)/drain/config.json
	$(call remove_plugin,$(DRAIN_PLUGIN))
	$(DOCKER) plugin create $(DRAIN_PLUGIN) $(BENCH_DIR)/drain
	$(DOCKER) plugin enable --timeout 0 $(DRAIN_PLUGIN)
	@echo "==> Go benchmarks: $(or $(GO_BENCH_PKGS),skipped)"
	$(if $(GO_BENCH_PKGS),$(GO) test -tags bench $(GO_BENCH_FLAGS) $(GO_BENCH_PKGS))
	@echo "==> end-to-end benchmark"
	$(GO) run -tags bench ./bench -docker $(BENCH_SOCKET) -plugin $(BENCH_PLUGIN) -drain $(DRAIN_PLUGIN) -image $(BUSYBOX_IMAGE) $(BENCH_FLAGS)
