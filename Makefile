# Two targets do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The tests run against a real Redis server: Debian's package, installed when it is missing.
REDIS_SERVER := $(shell command -v redis-server 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test bench redis-server
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/advisor demo

redis-server:
ifeq ($(REDIS_SERVER),)
	$(SUDO) apt-get install -y -q redis-server >/dev/null 2>&1 || \
		($(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q redis-server >/dev/null)
	@# the package starts a system service; the tests start their own servers on free ports
	-$(SUDO) service redis-server stop >/dev/null 2>&1
endif

test: $(STAMP) redis-server
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP) redis-server
	$(VENV)/bin/python bench/retrieval.py
	$(VENV)/bin/python bench/engine.py
	$(VENV)/bin/python bench/capacity.py
	$(VENV)/bin/python bench/safety.py
