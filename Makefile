# p2pchat — the two commands a fresh clone needs are `make run` and `make test`.
# Everything is installed from this repository's own files into ./.venv.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make run` keeps its node where the CLI looks by default (the user data directory, or
# $P2PCHAT_HOME when it is set), so `p2pchat status` in another terminal finds it.
# Options: make run PORT=4001 BOOTSTRAP=/ip4/.../p2p/12D3KooW... ARGS="--nearby"
PORT      ?=
BOOTSTRAP ?=
ARGS      ?=
RUN_OPTS  := $(if $(PORT),--port $(PORT)) $(foreach b,$(BOOTSTRAP),--bootstrap $(b)) $(ARGS)

.PHONY: run shell test setup lint typecheck pytest netns-deps fuzz sim bench vectors node-test clean testnet

setup: $(STAMP)

# Both distributions are installed editable in one pip call, so `p2pchat-crypto`
# resolves to ./crypto and nothing named p2pchat is ever fetched from an index.
# libp2p needs trio-typing at run time, but its type-only trio-stubs shadow the
# inline types of trio >= 0.23 (mypy would not know trio.TaskStatus, ...): removed.
$(STAMP): pyproject.toml crypto/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ./crypto -e ".[dev]"
	rm -rf $(VENV)/lib/python*/site-packages/trio-stubs
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/p2pchat node run --create-identity $(strip $(RUN_OPTS))

# A shell with .venv/bin first on PATH: `p2pchat ...` then talks to the node of `make run`.
shell: $(STAMP)
	@echo "p2pchat is on PATH in this shell; type exit to leave it."
	@PATH="$(CURDIR)/$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" $${SHELL:-/bin/sh}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The network-namespace tests (tests/netns, docs/testing-netns.md) need iptables for NAT, loss
# and partitions. As root (CI, these machines) it is installed from Debian's packages when missing;
# as another user nothing happens and those tests skip with the reason.
# iptables for the NAT routers; miniupnpd (nftables backend) and stund (a STUN server, which
# tells miniupnpd its external address) for the UPnP test of tests/integration/test_nat_traversal.py.
netns-deps:
	@if [ "$$(id -u)" = 0 ] && ! { command -v iptables && command -v miniupnpd && command -v stund; } >/dev/null 2>&1; then \
		echo "installing iptables, miniupnpd-nftables, stun-server (Debian packages) for the network-namespace tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables miniupnpd-nftables stun-server; \
	fi

# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
pytest: $(STAMP) netns-deps
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as failure" >&2; fi; \
	exit $$rc

test: lint typecheck pytest

# The testnet (tests/testnet, docs/testnet.md): 24 real nodes in network namespaces for 20
# minutes, report under testnet-reports/. Another scenario or options:
# make testnet TESTNET_ARGS="smoke --report /tmp/r"; `$(BIN)/python -m tests.testnet --help`.
TESTNET_ARGS ?= default
testnet: $(STAMP) netns-deps
	$(BIN)/python -m tests.testnet $(TESTNET_ARGS)

vectors: $(STAMP)
	$(BIN)/python protocol-spec/vectors/generate.py

fuzz: $(STAMP)
	P2PCHAT_FUZZ_EXAMPLES=2000000 $(BIN)/python -m pytest tests/protocol -k fuzz -q

sim: $(STAMP)
	$(BIN)/python -m tests.sim.campaign

bench: $(STAMP)
	for b in bench/*_bench.py; do $(BIN)/python $$b || exit 1; done

# The Node.js client's own unit tests (make test runs them too, via tests/integration).
node-test:
	cd clients/node && npm ci --no-audit --no-fund && npm test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
