# kiu: the two commands a user needs are `make demo` and `make test`.
# Everything else here is a building block of those two.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LEAN := .kiu/lean-venv

.PHONY: help venv tools lint typecheck contracts check unit-tests test \
        cluster-up cluster-down cluster-status demo clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# Triton 2.51 with its Python backend, for tests/unit_runtime/test_triton.py. Only the
	@# server binary is used: without --no-deps its numpy<2 pin would downgrade numpy.
	$(BIN)/pip install --quiet --no-deps 'nvidia-pytriton>=0.7'
	touch $@

venv: $(STAMP) ## create .venv and install kiu with its dev tools

tools: ## build the pinned control plane, kubectl and helm from Go modules (cached in hack/.cache)
	hack/build.sh

lint: venv ## ruff lint and format check
	$(BIN)/ruff check operator tests hack bench
	$(BIN)/ruff format --check operator tests hack bench

typecheck: venv ## mypy (strict for kiu.policy, kiu.api, kiu.manifests)
	$(BIN)/mypy

contracts: venv ## import-linter layer contracts
	$(BIN)/lint-imports

check: lint typecheck contracts ## all static checks

test: venv tools check ## everything: static checks, unit tests, and end-to-end tests on the local cluster
	$(BIN)/pytest

unit-tests: venv ## only the tests that need no cluster
	$(BIN)/pytest -m 'not cluster'

.PHONY: lock lean-check

LOCK := $(BIN)/uv pip compile --quiet --universal --generate-hashes --custom-compile-command "make lock"

lock: venv ## pin the images' Python packages with hashes (docker/*/requirements.lock)
	$(LOCK) --python-version 3.11 --extra unit pyproject.toml -o docker/kiu/requirements.lock
	$(LOCK) --python-version 3.12 docker/triton/requirements.in -o docker/triton/requirements.lock

lean-check: ## pip install . in a fresh venv: no cpu runtime, and the operator and gateway start
	rm -rf $(LEAN) && $(PYTHON) -m venv $(LEAN)
	$(LEAN)/bin/pip install --quiet .
	! $(LEAN)/bin/pip list 2>/dev/null | grep -iE '^(kserve|onnxruntime|gevent|geventhttpclient|pillow) '
	$(LEAN)/bin/kiu operator --help >/dev/null
	$(LEAN)/bin/kiu gateway --help >/dev/null
	rm -rf $(LEAN)

.PHONY: fuzz
fuzz: venv ## property-based fuzzing of request parsing and image admission, long random run
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/gateway/test_fuzz.py tests/gateway/test_images.py

cluster-up: venv tools ## start the local control plane and node agent; prints KUBECONFIG=<path>
	hack/cluster.sh up

cluster-down: ## stop everything cluster-up started
	hack/cluster.sh down

cluster-status: ## show what is running
	hack/cluster.sh status

clean: cluster-down ## remove the virtual environment and local state (keeps the Go build cache)
	rm -rf $(VENV) .kiu

.PHONY: demo-down

demo: venv tools ## the main job: local cluster, kiu installed with its chart, a model scaling under load, a plot
	hack/cluster.sh up
	$(BIN)/python hack/demo.py

demo-down: ## uninstall the demo's kiu release and stop the local cluster
	-test -f .kiu/kubeconfig && KUBECONFIG=.kiu/kubeconfig hack/.cache/bin/helm uninstall kiu \
		--namespace kiu-system --wait --timeout 60s
	-test -f .kiu/kubeconfig && KUBECONFIG=.kiu/kubeconfig hack/.cache/bin/kubectl delete \
		namespace demo --ignore-not-found --wait=false
	hack/cluster.sh down

.PHONY: bench bench-gateway bench-tps bench-autoscaler bench-e2e bench-operator bench-cold-start \
        bench-unit

bench: venv tools ## every benchmark, then bench/README.md from bench/results/*.json (about an hour: 3 repetitions)
	$(BIN)/python -m bench.run

bench-gateway: venv ## gateway overhead against a unit called directly (loopback processes)
	$(BIN)/python -m bench.run gateway

.PHONY: profile-gateway
profile-gateway: venv ## where the gateway's CPU goes per call, stage by stage (py-spy, loopback, root)
	$(BIN)/python -m bench.hot_path

bench-tps: venv ## admitted rate against the TPS limit, one to three gateway replicas sharing it by demand
	$(BIN)/python -m bench.run tps

bench-autoscaler: venv ## replay of kiu.policy.scaling against static fleets and an HPA-like rule
	$(BIN)/python -m bench.run autoscaler

bench-e2e: venv tools ## step load through the chart-installed gateway on the local cluster
	$(BIN)/python -m bench.run e2e

bench-operator: venv tools ## 200 and 1000 ProjectVersions on simulated nodes of the local cluster
	$(BIN)/python -m bench.run operator

bench-cold-start: venv tools ## a call to a model at zero units on the local cluster, against a warm call
	$(BIN)/python -m bench.run cold-start

bench-unit: venv ## unit CPU per call for a 224-crop classifier on a 640x480 JPEG, stages apart
	$(BIN)/python -m bench.run unit

.PHONY: reliability

reliability: venv tools ## fault scenarios under load on the local cluster, then docs/reliability.md (about 6 min)
	rm -f .kiu/reliability/*.json
	$(BIN)/pytest -m reliability; status=$$?; $(BIN)/python hack/reliability_doc.py; exit $$status
