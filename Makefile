# Two commands set up a fresh machine: `make demo` and `make test`.
# Install steps are idempotent; stamps and downloads live in .cache/ (ignored by git).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CACHE  := .cache
STAMP  := $(CACHE)/stamps

.PHONY: demo test lint typecheck pytest bench clean services collector influxd18 influxdb2

# Real servers the tests run on loopback, from Debian (needs root, as CI has), the
# headless browser that loads the HTML report, and espeak-ng, the small real TTS engine
# of examples/espeak_service.py.
SERVICE_BINARIES := prometheus promtool prometheus-alertmanager amtool influxd chromium espeak-ng
SERVICE_PACKAGES := prometheus prometheus-alertmanager influxdb chromium espeak-ng

$(STAMP):
	mkdir -p $(STAMP)

# The venv is rebuilt only when pyproject.toml changes. torch comes from pip's
# cache after the first download.
$(STAMP)/venv: pyproject.toml | $(STAMP)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)/venv
	$(VENV)/bin/tts-otel demo --requests 20

lint: $(STAMP)/venv
	$(VENV)/bin/ruff check src tests benchmarks examples dashboards deploy
	$(VENV)/bin/ruff format --check src tests benchmarks examples dashboards deploy

typecheck: $(STAMP)/venv
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy deploy   # the manifest generator (pyproject's files list predates it)

services:
	@for b in $(SERVICE_BINARIES); do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "installing $(SERVICE_PACKAGES) from Debian"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SERVICE_PACKAGES); \
	fi

# otelcol-tts from Go modules with the official builder, cached in .cache/ by manifest hash.
collector:
	bash collector/build.sh

# influxd 1.8.10 (v2 API and Flux; Debian has only 1.6.7) from Go modules, cached in .cache/.
influxd18:
	bash scripts/build_influxd.sh

# InfluxDB OSS 2.8.0 (no Debian package) from Go modules and crates, cached in .cache/:
# about 10 minutes from empty Go and cargo caches; needs Go, cargo and pkg-config.
influxdb2:
	bash scripts/build_influxdb2.sh

# opentelemetry-distro on a path of its own, at the version of the installed
# instrumentation: the zero-code test runs it beside tts-otel's configurator.
DISTRO := $(CACHE)/otel-distro
$(DISTRO): $(STAMP)/venv
	rm -rf $@.tmp
	$(PY) -m pip install --quiet --no-deps --target $@.tmp \
		"opentelemetry-distro==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opentelemetry-instrumentation"))')"
	rm -rf $@ && mv $@.tmp $@

pytest: $(STAMP)/venv services collector influxd18 influxdb2 $(DISTRO)
	$(PY) -m pytest

test: lint typecheck pytest

bench: $(STAMP)/venv services
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/collection_stall.py
	$(PY) benchmarks/influx_export.py
	$(PY) benchmarks/outage.py

clean:
	rm -rf $(VENV) $(CACHE) tts-otel-out
