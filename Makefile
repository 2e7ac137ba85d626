# runv: build the guest (kernel, agent, initramfs), install the host package,
# and run the demo, the tests, the conformance suite or the benchmarks.
# Build outputs are cached under $(RUNV_CACHE), keyed by content hash.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= $(CURDIR)/.venv
RUNV_CACHE ?= /var/cache/runv
SHARE_DIR ?= /usr/local/share/runv
BIN_DIR ?= /usr/local/bin
export RUNV_CACHE

# The launcher's flags (tests/unit/test_state_launcher.py builds it with the same).
LAUNCHER_CFLAGS := -std=c11 -O2 -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong

APT_PACKAGES := qemu-system-x86 linux-source-6.1 build-essential flex bison bc libelf-dev \
	libssl-dev cpio xz-utils musl-tools busybox-static python3-venv runc crun iproute2 kmod \
	podman netavark aardvark-dns iptables containerd containernetworking-plugins

.PHONY: all deps kernel initramfs venv install launcher demo test unit fuzz soak conformance bench density clean

all: install

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

kernel: deps
	kernel/build-kernel.sh

initramfs: deps
	kernel/build-initramfs.sh

venv: deps
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat

install: venv
	@k=$$(kernel/build-kernel.sh) && i=$$(kernel/build-initramfs.sh) && \
	mkdir -p $(SHARE_DIR) && cp $$k $(SHARE_DIR)/vmlinux.new && cp $$i $(SHARE_DIR)/initramfs.cpio.new && \
	mv $(SHARE_DIR)/vmlinux.new $(SHARE_DIR)/vmlinux && mv $(SHARE_DIR)/initramfs.cpio.new $(SHARE_DIR)/initramfs.cpio
	@$(MAKE) --no-print-directory launcher
	@# Bytecode made now: with PYTHONDONTWRITEBYTECODE in the engines' environment,
	@# every call would compile runv's modules again.
	@$(VENV)/bin/python -m compileall -q -j0 $(CURDIR)/runv >/dev/null
	@$(BIN_DIR)/runv check

# $(BIN_DIR)/runv: a C launcher that answers `runv state ID` itself (engines call it
# many times per container; Python's start-up alone is slower than `runc state`) and
# execs the Python path, $(SHARE_DIR)/runv.py, for everything else. No venv
# prerequisite: `make launcher VENV=... BIN_DIR=... SHARE_DIR=...` builds one for a
# checkout with another venv's packages.
launcher:
	@mkdir -p $(SHARE_DIR) $(BIN_DIR)
	@$(VENV)/bin/python launcher/script.py $(SHARE_DIR)/runv.py $(CURDIR)
	@cc $(LAUNCHER_CFLAGS) -DRUNV_PYTHON='"$(VENV)/bin/python"' -DRUNV_SCRIPT='"$(SHARE_DIR)/runv.py"' \
		-o $(BIN_DIR)/runv.new launcher/runv.c
	@chmod 755 $(BIN_DIR)/runv.new && mv $(BIN_DIR)/runv.new $(BIN_DIR)/runv

# The main job: build everything, then run a busybox container in a VM.
demo: install
	@bundle=$$(mktemp -d /tmp/runv-demo.XXXXXX) && \
	$(VENV)/bin/python tests/mkbundle.py $$bundle -- sh -c 'echo "hello from a runv VM: $$(uname -sr), hostname $$(hostname)"' && \
	$(BIN_DIR)/runv run --bundle $$bundle demo-$$$$; rc=$$?; rm -rf $$bundle; exit $$rc

unit: venv
	$(VENV)/bin/python -m pytest -q tests/unit

# The property tests (a hostile guest's frames against the decoder and the shim) at length.
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(VENV)/bin/python -m pytest -q -m property tests/unit

test: install
	$(VENV)/bin/python -m pytest -q tests

# Fault injection at length (tests/faults/soak.py; `make test` runs 50 cycles):
# create/start/kill/delete cycles, a SIGKILL at a random phase in one in ten, then the leak check.
SOAK_CYCLES ?= 1000
SOAK_PARALLEL ?= 8
soak: install
	$(VENV)/bin/python tests/faults/soak.py --cycles $(SOAK_CYCLES) --parallel $(SOAK_PARALLEL)

conformance: install
	conformance/build.sh
	$(VENV)/bin/python conformance/run.py

bench: install
	$(VENV)/bin/python bench/run.py

# N idle containers at once: memory and CPU per container, start, exec and delete times.
N ?= 10
density: install
	$(VENV)/bin/python bench/density.py $(N)

clean:
	rm -rf $(VENV) *.egg-info
