# The two commands a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test processes at once (pytest-xdist): three on CI's two cores, since much of the suite
# waits on other processes (servers, agents, kills, backoffs): with two workers the cores
# were busy 71% of the run. A test file's tests stay on one worker, so its module
# fixtures (a server, a browser) start once.
TEST_WORKERS ?= 3
# The server suites that run a second time on PostgreSQL (a throwaway cluster) with blobs
# and uploads in progress in S3 (moto's server), after the whole suite on the embedded
# SQLite: files, uploads, the change feed, tenant isolation, webhooks and transfers
# (tests/conftest.py reads DROPLINE_TEST_BACKEND). The *_postgres.py tests start their
# own PostgreSQL and ran in the first pass already.
BACKEND_SUITES := tests/server/files tests/server/uploads tests/server/http/test_isolation.py \
  tests/server/http/test_cross_tenant.py tests/server/webhooks tests/server/transfers

.PHONY: demo test package lint typecheck bench screenshots faults clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,ui,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tools.demo

# The packages are built once (and again only when their sources change): the
# tests in tests/packaging install and run them.
test: $(STAMP)
	@bash tools/system-deps.sh
	$(BIN)/python -m tools.package
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile
	DROPLINE_TEST_BACKEND=postgres-s3 QT_QPA_PLATFORM=offscreen \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
	  --ignore-glob='*_postgres.py' $(BACKEND_SUITES)

package: $(STAMP)
	@bash tools/system-deps.sh
	$(BIN)/python -m tools.package

lint: $(STAMP)
	$(BIN)/ruff check dropline sdk sync agent ui server tests bench tools
	$(BIN)/ruff format --check dropline sdk sync agent ui server tests bench tools

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run

screenshots: $(STAMP)
	$(BIN)/python -m tools.screenshots

# The full fault campaign (docs/reliability.md); its table goes to build/faults.md.
# Run as root (as CI does): the disk-full family mounts size-limited tmpfs file systems.
faults: $(STAMP)
	@mkdir -p build
	$(BIN)/python -m tests.faults.campaign --jobs 8 --report build/faults.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
