# Postsale: `make run` starts the suite with demo data; `make test` runs every test.
# Both install what they need first (a virtual environment from pinned versions, the Kafka
# jars from Maven Central, stripe-mock with `go install`, PostgreSQL from Debian's packages).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := ./contracts ./libs ./deploy/local ./services/checkout ./services/entitlements ./services/accounts ./services/notifications
PYPROJECTS := contracts/pyproject.toml libs/pyproject.toml deploy/local/pyproject.toml $(wildcard services/*/pyproject.toml)

.PHONY: install tools run test test-unit test-integration test-e2e test-faults test-docker generate bench clean

install: $(STAMP)

$(STAMP): constraints.txt requirements-dev.txt $(PYPROJECTS)
	$(PYTHON) -m venv $(VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/pip install --quiet -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	touch $@

# Real components for the tests: fetched once, reused afterwards.
tools: install
	$(BIN)/python -m postsale_local.kafka classpath > /dev/null
	$(BIN)/python -m postsale_local.stripe_mock install > /dev/null
	$(BIN)/python -m postsale_local.postgres install > /dev/null
	$(BIN)/python -m postsale_local.browser install > /dev/null
	$(BIN)/python -m postsale_local.deploy_tools install > /dev/null  # helm, kubeconform, oasdiff, schemas

run: install
	$(BIN)/python -m postsale_local.kafka classpath > /dev/null
	$(BIN)/python -m postsale_local.devrun

test: tools
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest -m unit

test-integration: tools
	$(BIN)/python -m pytest -m integration

test-e2e: tools
	$(BIN)/python -m pytest -m e2e

# The fault matrix alone (docs/operations.md): each test kills part of a suite of its own under
# load and checks that nothing was lost or done twice. `make test` runs it too.
test-faults: tools
	$(BIN)/python -m pytest -m fault

# Builds the images and runs the journey against deploy/compose.yaml: needs a Docker engine.
test-docker: tools
	$(BIN)/python -m pytest -m docker

# Contract schemas, golden examples, AsyncAPI documents and the catalogue in docs/contracts.md.
generate: install
	$(BIN)/python contracts/generate.py

# The purchase pipeline under load, each figure beside its floor from the same run (about 10
# minutes): bench/results/pipeline.json, its plots and the table in bench/README.md.
bench: tools
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) .cache .tools
