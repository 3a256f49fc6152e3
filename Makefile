# trustport — two commands do all set-up on a fresh Debian 12 machine:
#   make demo   installs what is missing, then runs the lab (real FreeRADIUS + eapol_test)
#   make test   installs what is missing, then runs ruff, mypy --strict and the whole test suite
#   make unit   ruff, mypy --strict and the unit tests only (no services, well under a minute)
#   make bench-enforcement  the bulk-enforcement benchmark (bench/bench_enforcement.py)
#   make bench-directory    the directory-sync benchmark, 10,000 entries (bench/bench_directory.py)
#   make wheel-check  builds the wheel, installs it into a fresh venv and runs `trustport radius render` and
#               `trustport lab` from a directory outside the checkout (CI runs it after `make test`)
# All are idempotent: packages already present are not installed again.

# rlm_python3 embeds Debian's Python 3.11: build the venv with that interpreter so compiled wheels match.
PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := python3 python3-venv openssl curl freeradius freeradius-python3 freeradius-utils eapoltest slapd ldap-utils \
                postgresql snmpd snmp hostapd wpasupplicant iproute2 chromium chromium-driver
PYTEST_ARGS ?=
EXTRAS := dev,lab,postgres
CONSTRAINTS := constraints.txt

.PHONY: demo test unit lint pytest wheel-check system-deps venv bench bench-quick bench-enforcement bench-directory clean

demo: system-deps venv
	$(BIN)/trustport lab

test: system-deps venv lint pytest

unit: venv lint
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The installed package, not the checkout: see .ci/wheel-check.
wheel-check: system-deps venv
	.ci/wheel-check $(PYTHON) $(BIN)/python

# every benchmark, one table (figure | value | same-run baseline | target | met?), raw JSON in bench/results/
bench: system-deps venv
	$(BIN)/python bench/run_all.py

# the same with small counts (a few minutes)
bench-quick: system-deps venv
	$(BIN)/python bench/run_all.py --quick

# 10,000 ports on 100 fake switches quarantined in bulk, against one port per job (a few minutes; not a test)
bench-enforcement: venv
	$(BIN)/python bench/bench_enforcement.py

# 10,000 directory entries synced on SQLite and PostgreSQL, next to ldapsearch and a bare paged read (not a test)
bench-directory: system-deps venv
	$(BIN)/python bench/bench_directory.py

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# Debian's freeradius postinst may start a system radiusd on 1812; trustport's lab and tests use their own.

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
