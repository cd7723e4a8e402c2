# Two set-up commands, both from a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_WORKERS ?= 4  # pytest-xdist workers (whole files or parts of one each: tests/conftest.py); most tests wait on real load, so more than the 2 cores
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench prometheus chaos-tools chromium assets clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.installed

## demo: install loadkit into .venv and run it against the local canary sandbox
demo: $(VENV)/.installed
	$(BIN)/loadkit demo

## test: install test dependencies (and Debian's prometheus, chromium, nftables and stress-ng when missing), lint, run the whole suite
test: $(VENV)/.installed-test prometheus chaos-tools chromium
	$(BIN)/ruff check .
	$(BIN)/python -m compileall -q loadkit locustfiles tests  # bytecode on disk: every subprocess loads it
	@# mypy checks while the suite runs (the suite waits on real load a good part of the time): both must pass
	@$(BIN)/mypy > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	  $(BIN)/pytest -n $(TEST_WORKERS); tests=$$?; \
	  wait $$mypy; typed=$$?; echo "mypy:"; cat $(VENV)/mypy.log; \
	  [ $$tests -eq 0 ] && [ $$typed -eq 0 ]

prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus (tests run a real Prometheus)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

# Browser tests (the HTML reports, /ui) drive Debian's chromium with Playwright (never `playwright install`:
# it downloads browsers)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (browser tests of the reports and /ui)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; }

# nftables (packet loss and partitions on the sandbox) and stress-ng (CPU stress without a cgroup)
chaos-tools:
	@command -v nft >/dev/null 2>&1 && command -v stress-ng >/dev/null 2>&1 || { \
	  echo "installing Debian's nftables and stress-ng (tests inject real packet loss and CPU stress)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nftables stress-ng; }


## assets: npm ci web/ (uPlot, pinned by web/package-lock.json) and copy it into loadkit/report/_assets/
assets:
	$(PYTHON) scripts/assets.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/accuracy.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/rollback.py
	$(BIN)/python benchmarks/workers.py
	$(BIN)/python benchmarks/open_model.py
	$(BIN)/python benchmarks/failfast.py
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
