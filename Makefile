# The project's commands. `make test` installs everything it needs (Python packages from the
# pinned requirements into .venv, Azurite from npm into devstack/node_modules) and runs the suite.

PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .make

.PHONY: test lint security deps lock schema bench demo serve faults clean

# The runtime is installed exactly as locked: every package pinned and its hash checked. The dev
# tools go in afterwards, in a separate step, and may not change what the runtime locked.
$(STAMPS)/python: requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/node: devstack/package.json devstack/package-lock.json
	npm ci --prefix devstack --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

deps: $(STAMPS)/python $(STAMPS)/node

lint: $(STAMPS)/python security
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Static security checks on the deployed code: clean at medium severity and above.
security: $(STAMPS)/python
	$(BIN)/bandit --quiet --recursive -ll shared functions function_app.py

# Recompile the hashed lock from requirements.in after changing a runtime dependency.
lock: $(STAMPS)/python
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --strip-extras --output-file requirements.txt requirements.in

test: deps lint
	$(BIN)/python -m pytest

schema: $(STAMPS)/python
	$(BIN)/python -m shared.domain.schema

bench: deps
	$(BIN)/python -m benchmarks

demo: deps
	$(BIN)/python -m devstack.demo

# The local stack without the tour, until Ctrl-C: prints its endpoints and releasectl commands.
serve: deps
	$(BIN)/python -m devstack.demo --serve

clean:
	rm -rf $(VENV) $(STAMPS) devstack/node_modules .pytest_cache .ruff_cache .hypothesis

faults: deps
	$(BIN)/python -m tests.faults.run --scenarios 10000 --store both --shards 10 --parallel 2
