# Conduit's entry points. `make demo` runs the main job, `make test` the tests.
GO      ?= go
BIN     := $(CURDIR)/bin
GOFLAGS_BUILD := -trimpath
VERSION := $(shell sed -n 's/^var Version = "\(.*\)"/\1/p' pkg/version/version.go)
export CGO_ENABLED ?= 0

# Every main package under a cmd/ folder, but the examples', becomes a binary in bin/.
CMDS = $(shell $(GO) list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./... | grep '/cmd/' | grep -v '/examples/')

.PHONY: all build test unit fuzz bench soak demo lint fmt tools clean
all: build

build:
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ $(CMDS)

## test: every test, including the ones that start real programs (needs root).
## The soak runs for 60 s after the others, on its own, so that the packages
## go test runs in parallel do not take the CPU its paced load needs.
test: test-deps build cluster-prepare
	$(GO) test -count=1 $$($(GO) list ./... | grep -v '/proxy/integration/soak$$')
	$(MAKE) soak SOAK_DURATION=60s
	$(MAKE) fuzz
	$(MAKE) e2e

## test-deps: the Debian packages the tests start (curl, nftables, nginx,
## haproxy, MariaDB, ...); installs what is missing (root).
.PHONY: test-deps
test-deps:
	@scripts/test-deps.sh

## fuzz: each fuzz target briefly; a failure leaves its input in testdata/fuzz.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/ports
	$(GO) test -run '^$$' -fuzz '^FuzzRun$$' -fuzztime $(FUZZTIME) ./krm-functions/frontend
	$(GO) test -run '^$$' -fuzz '^FuzzHead$$' -fuzztime $(FUZZTIME) ./proxy/internal/http1
	$(GO) test -run '^$$' -fuzz '^FuzzFraming$$' -fuzztime $(FUZZTIME) ./proxy/internal/http1
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) ./proxy/internal/detect

## demo: the walkthrough. On the cluster of the current kubeconfig context,
## else on the local node (root): the control plane (overlays/local) and
## emojivoto injected by conduit-inject, then meshstat stat and tap.
## demo-down removes what demo added. demo-render only prints the injected app.
.PHONY: demo-down demo-render demo-prepare
demo: demo-prepare build image prometheus-image emojivoto-images
	$(GO) run ./demo/cmd/conduit-demo up
demo-down:
	$(GO) run ./demo/cmd/conduit-demo down
demo-render: build
	PATH="$(BIN):$$PATH" $(GO) tool kustomize build --enable-alpha-plugins --enable-exec examples/emojivoto
## demo-prepare: Debian's prometheus, packed into the local node's image.
demo-prepare:
	@command -v prometheus >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## bench: Go benchmarks, then the load runs that print figures (root; env
## BENCH_DURATION, BENCH_WARMUP, BENCH_QPS, BENCH_TARGETS, BENCH_PROTOCOLS: see bench/README.md).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./bench
	$(GO) run ./bench/ttfb

## soak: both proxies for 10 minutes at 1000 QPS of mixed traffic with
## backend resets and hangs, slow clients and connection churn; prints their
## fds, goroutines, RSS and tcp_open_connections before and after, and fails
## unless those return to baseline with RSS under 20 MiB (root; env
## SOAK_DURATION, SOAK_QPS, SOAK_PROXY_TIMEOUTS, ...: see proxy/integration/soak/README.md).
SOAK_DURATION ?= 10m
soak:
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -v -timeout 30m -run '^TestSoak$$' ./proxy/integration/soak/

## lint: gofmt, a tidy go.mod and go.sum (go mod tidy -diff prints what
## `go mod tidy` would change), go vet and staticcheck.
lint:
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) dist

## image: the proxy image (OCI layout dist/conduit-proxy/, docker archive
## dist/conduit-proxy.tar), reproducible: every timestamp is the time of the
## last commit that touched the image's sources, so committing rendered
## manifests does not change the digest they pin.
## PUSH=registry/repo:tag also pushes it and prints the pinned reference.
IMAGE_SOURCES = go.mod go.sum pkg proxy discovery krm-functions image
.PHONY: image
image:
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct -- $(IMAGE_SOURCES)) $(GO) run ./image/cmd/conduit-image $(if $(PUSH),--push $(PUSH))

## cluster-up / cluster-down: the local single-node Kubernetes (root; see
## cluster/README.md). Both are idempotent. cluster-prepare installs the
## Debian packages and builds the Kubernetes binaries into /var/cache/conduit.
CLUSTER = $(GO) run ./cluster/cmd/conduit-cluster
.PHONY: cluster-prepare cluster-up cluster-down e2e
cluster-prepare:
	$(CLUSTER) prepare
cluster-up:
	$(CLUSTER) up $(if $(wildcard dist/conduit-proxy.tar),--image $(CURDIR)/dist/conduit-proxy.tar)
cluster-down:
	$(CLUSTER) down

## e2e: injected workloads on the local node; brings the node up (and down
## again unless it was already up).
e2e: build image prometheus-image emojivoto-images cluster-prepare
	$(GO) test -count=1 -tags e2e -timeout 25m -v ./e2e/...
	$(GO) test -count=1 -tags e2e -timeout 20m -v -run '^TestLocalOverlayOnTheNode$$' ./generator/

## prometheus-image: Debian's prometheus (apt-get install prometheus) packed
## into dist/prometheus/ and dist/prometheus.tar, timestamps from the package.
PROMETHEUS_DEB_VERSION = $(shell dpkg-query -W -f='$${Version}' prometheus 2>/dev/null | tr '+~:' '---')
.PHONY: prometheus-image
prometheus-image:
	@test -x /usr/bin/prometheus || { echo "prometheus-image: /usr/bin/prometheus missing: apt-get install prometheus"; exit 1; }
	$(GO) run ./image/cmd/conduit-host-image --program /usr/bin/prometheus --dir /prometheus:65534 --dir /etc/prometheus \
		--user 65534 --tag ghcr.io/conduitmesh/prometheus:$(PROMETHEUS_DEB_VERSION) --layout dist/prometheus --archive dist/prometheus.tar

## manifests: render base/ from generator/conduit.yaml, first pinning its
## images to the digests `make image` and `make prometheus-image` produced.
.PHONY: manifests
manifests: image prometheus-image
	$(GO) run ./generator/cmd/conduit-generate --config generator/conduit.yaml --write-config --out base \
		--proxy-layout dist/conduit-proxy --prometheus-layout dist/prometheus

## emojivoto-images: the demo app's four images as docker archives in dist/,
## tagged as examples/emojivoto's manifests name them.
EMOJIVOTO_APPS = emoji voting web vote-bot
.PHONY: emojivoto-images
emojivoto-images:
	@mkdir -p dist
	for app in $(EMOJIVOTO_APPS); do \
		SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) $(GO) run ./image/cmd/conduit-image --package ./examples/emojivoto/cmd/$$app \
			--entrypoint /$$app --user 65532 --platform linux/amd64 --layout "" \
			--archive dist/emojivoto-$$app.tar --tag ghcr.io/conduitmesh/emojivoto-$$app:$(VERSION) || exit 1; \
	done

## e2e-local: overlays/local on the local node (root): Debian's Prometheus
## with conduit-discovery becomes Ready and answers response_total by
## deployment for an injected workload, through the API server's proxy.
.PHONY: e2e-local
e2e-local: image prometheus-image cluster-prepare
	$(GO) test -count=1 -tags e2e -timeout 20m -v -run '^TestLocalOverlayOnTheNode$$' ./generator/
