# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXAMPLE := examples/content-moderation
REPORT := reports/content-moderation

.PHONY: demo test lint typecheck security unit graphviz services bench bench-evasion bench-privacy bench-gateway schemas clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $@

$(VENV)/.demo: $(VENV)/.created pyproject.toml
	$(PIP) install --quiet -e '.[ml,privacy,serve]'
	touch $@

$(VENV)/.dev: $(VENV)/.created pyproject.toml
	$(PIP) install --quiet -e '.[dev,ml,privacy,distributed,serve]'
	touch $@ $(VENV)/.demo

# Graphviz renders the DFD as SVG; without it the report falls back to Mermaid.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) \
	      || echo "note: could not install Graphviz; the report will use Mermaid"; \
	  else echo "note: Graphviz not installed; the report will use Mermaid"; fi; }

# PostgreSQL and Redis let the gateway's storage tests run against real servers; without them they skip.
services:
	@if ! { command -v initdb >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 \
	        || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
	    || ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq postgresql redis-server >/dev/null) \
	      || echo "note: could not install PostgreSQL/Redis; their gateway tests will be skipped"; \
	  else echo "note: PostgreSQL or Redis not installed; their gateway tests will be skipped"; fi; fi

# The scenario fails two requirements on purpose (exit 1); only bad input (exit 2+) fails the demo.
demo: $(VENV)/.demo graphviz
	@$(VENV)/bin/modelward audit $(EXAMPLE) --out $(REPORT); status=$$?; \
	  if [ $$status -gt 1 ]; then exit $$status; fi; \
	  echo "Report written to $(REPORT)/report.html (audit exit code $$status: 1 = requirements failed, as designed)"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

security: $(VENV)/.dev
	$(VENV)/bin/bandit -q -c pyproject.toml -r src

unit: $(VENV)/.dev graphviz services
	$(PY) -m pytest -q -n 2

test: lint typecheck security unit

bench: $(VENV)/.dev
	$(PIP) install --quiet -e '.[dev,ml,bench]'
	$(PY) benchmarks/threats/bench_threats.py

bench-evasion: $(VENV)/.dev
	$(PIP) install --quiet -e '.[dev,ml,bench]'
	$(PIP) install --quiet --no-deps 'torchattacks>=3.5'
	$(PY) benchmarks/evasion/bench_evasion.py

bench-privacy: $(VENV)/.dev
	$(PIP) install --quiet -e '.[dev,ml,privacy,distributed,bench]'
	$(PY) benchmarks/privacy/membership.py
	$(PY) benchmarks/privacy/reference_training.py
	$(PY) benchmarks/privacy/dp_sgd.py
	$(PY) benchmarks/privacy/extraction.py

# The gateway beside a bare FastAPI endpoint (Redis rate limits too when redis-server is installed); ~8 minutes.
bench-gateway: $(VENV)/.dev
	$(PY) benchmarks/gateway/bench_gateway.py

# Regenerate the published JSON Schemas (a test fails when they drift from the code).
schemas: $(VENV)/.demo
	for what in system triage report; do $(VENV)/bin/modelward schema $$what -o schemas/$$what.schema.json; done

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache
