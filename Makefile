# tsmhub: the two commands a newcomer needs are `make run` and `make test`.
# Everything this file needs besides Go 1.26 it installs itself.

SHELL := /bin/bash
GO ?= go
MODULES := pkg schemas services/registry services/conversation services/scriptrouter services/mnoadapter services/sesimulator cmd test
# Modules whose tests run elsewhere (compose-test, bench) but which lint covers too.
LINT_MODULES := $(MODULES) deploy bench
SERVICES := registry conversation scriptrouter mnoadapter sesimulator
BIN := bin
# Static binaries: the same ones go into the FROM-scratch images.
export CGO_ENABLED ?= 0
GOFLAGS_BUILD := -trimpath
TEST_TIMEOUT ?= 20m

.PHONY: all build run test test-unit test-integration lint vet fmt fuzz bench clean clean-data tools

all: build

## build: static binaries of the five services, tsmctl and the dev launcher into ./bin
build:
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do \
		echo "go build $$s"; \
		$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/$$s ./services/$$s || exit 1; \
	done
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/tsmctl ./cmd/tsmctl
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/tsmhub-dev ./cmd/tsmhub-dev

## run: build, then start NATS (embedded) + every service + the demo data set
run: build
	$(BIN)/tsmhub-dev -data data -bin $(BIN)

## test: vet, gofmt check, unit tests of every module, integration tests (real embedded NATS)
test: lint
	@set -o pipefail; for m in $(MODULES); do \
		echo "== go test $$m"; \
		(cd $$m && $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...) || exit 1; \
	done

## test-integration: only the end-to-end tests through all five services
test-integration: build
	cd test && $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./...

## lint: gofmt and go vet on every module
lint:
	@out=$$(gofmt -l $(LINT_MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(LINT_MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

fmt:
	gofmt -w $(MODULES)

## fuzz: run every fuzz target for a short budget (FUZZTIME each)
FUZZTIME ?= 10s
fuzz:
	@for pkgdir in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg services | xargs -n1 dirname | sort -u); do \
		mod=$$(echo $$pkgdir | cut -d/ -f1); [ $$mod = services ] && mod=$$(echo $$pkgdir | cut -d/ -f1-2); \
		rel=./$${pkgdir#$$mod/}; \
		for f in $$(grep -h '^func Fuzz' $$pkgdir/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== fuzz $$pkgdir $$f ($(FUZZTIME))"; \
			(cd $$mod && $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$rel) || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN)

## clean-data: remove the embedded run's JetStream store and bbolt files
clean-data:
	rm -rf data

## tools: the stock nats CLI (natscli, pinned) into ./bin for the README recipes
NATSCLI_VERSION := v0.5.0
tools: $(BIN)/nats
$(BIN)/nats:
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) $(GO) install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

## images: static binaries (services, tsmctl, seed job, health probe, nats-server
## at NATS_SERVER_VERSION) into bin/images, each in an image FROM scratch tagged
## tsmhub/<name>:$(IMAGE_TAG). Nothing is pulled. Dockerfiles: deploy/docker.
IMAGE_TAG ?= latest
NATS_SERVER_VERSION := v2.15.2
IMAGE_DIR := $(BIN)/images
IMAGES := $(SERVICES) tsmctl seed nats
# The legacy builder when the buildx plugin is missing (it needs nothing else
# for FROM-scratch images); BuildKit otherwise.
DOCKER_BUILDKIT ?= $(shell docker buildx version >/dev/null 2>&1 && echo 1 || echo 0)

.PHONY: images compose-test
images:
	@rm -rf $(IMAGE_DIR) && mkdir -p $(IMAGE_DIR)/.bin
	$(GO) build $(GOFLAGS_BUILD) -ldflags='-s -w' -o $(IMAGE_DIR)/.bin/ \
		$(foreach s,$(SERVICES),./services/$(s)) ./cmd/tsmctl ./deploy/seed ./deploy/healthcheck
	cd $(IMAGE_DIR) && GOWORK=off GOBIN=$(abspath $(IMAGE_DIR)/.bin) \
		$(GO) install $(GOFLAGS_BUILD) -ldflags='-s -w' github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)
	@set -e; for i in $(IMAGES); do \
		ctx=$(IMAGE_DIR)/$$i; mkdir -p $$ctx/data; \
		bin=$$i; [ $$i = nats ] && bin=nats-server; \
		ln -f $(IMAGE_DIR)/.bin/$$bin $(IMAGE_DIR)/.bin/healthcheck $$ctx/; \
		[ $$i = nats ] && cp deploy/nats/cluster.conf deploy/nats/single.conf $$ctx/; \
		echo "docker build tsmhub/$$i:$(IMAGE_TAG)"; \
		out=$$(DOCKER_BUILDKIT=$(DOCKER_BUILDKIT) docker build -f deploy/docker/$$i.Dockerfile \
			-t tsmhub/$$i:$(IMAGE_TAG) $$ctx 2>&1) || { echo "$$out"; exit 1; }; \
	done
	@docker image prune -f --filter label=org.opencontainers.image.vendor=tsmhub >/dev/null
	@docker image ls --filter label=org.opencontainers.image.vendor=tsmhub --format '{{.Repository}}:{{.Tag}} {{.Size}}'

## compose-test: the compose end-to-end test (builds the images, three-node
## NATS cluster, Fig. 3 walkthrough with a killed service and a stopped node)
compose-test:
	test/compose/run.sh

## pcsc-test: the se-simulator's demo card through pcscd + vsmartcard vpcd: opensc-tool SELECT and a
## pyscard SCP03 session with secured GET STATUS (root; installs the Debian packages if missing)
.PHONY: pcsc-test
pcsc-test:
	GO=$(GO) test/pcsc/run.sh

## sesim-bench: the se-simulator's benchmarks: secured STORE DATA APDUs per second (card, execute use case,
## reader, over the bus) and a 100,000-card fleet (build, start-up, memory per idle card); SESIM_BENCH_FLEET=n
.PHONY: sesim-bench
sesim-bench:
	cd services/sesimulator && $(GO) test -run '^$$' -bench 'StoreData|ExecuteScript' -benchtime 2s ./app/
	cd services/sesimulator && $(GO) test -run '^$$' -bench 'StoreDataOverTheBus' -benchtime 300x ./service/
	cd services/sesimulator && $(GO) test -run '^$$' -bench 'FleetBuild|ServiceStartup|IdleCard' -benchtime 3x -timeout 30m ./service/

## bench: tsmhub end to end beside raw JetStream on the same server (issue 6): builds the
## services with a pprof endpoint into bin/bench (bench/cmd/profiled) and runs bench/cmd/tsmbench:
## durable steps per script, raw publish baseline, concurrency sweep, maximum rate, latency at
## 25/50/75 %, CPU profiles, registry scale at 10k/100k SEs. A few minutes; loopback only;
## results in bench/results/<timestamp>.{json,md}. BENCH_FLAGS adds flags, e.g.
## BENCH_FLAGS='-scale-1m -max-load 1.0' (see BENCHMARKS.md, bin/tsmbench -h).
BENCH_FLAGS ?=
bench:
	@mkdir -p $(BIN)/bench
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/bench/ ./bench/cmd/profiled/...
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/tsmbench ./bench/cmd/tsmbench
	$(BIN)/tsmbench -bin $(BIN)/bench -out bench/results $(BENCH_FLAGS)
