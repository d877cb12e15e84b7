# Fresh machine: `make demo` (set-up + the demo grid) or `make test` (set-up + all tests).
# Set-up runs once: the stamp file is remade only when pyproject.toml or the lock changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PIP_Q  := --quiet --disable-pip-version-check

.PHONY: setup demo test test-slow bench clean lock cluster-smoke sandbox

setup: $(STAMP) sandbox

# Debian packages: bubblewrap for the code sandbox (plugins/rewards/sandbox.py), which runs
# model-written programs; stockfish, the opponent of the chess-endgame environment.
sandbox:
	@{ command -v bwrap >/dev/null 2>&1 && { command -v stockfish >/dev/null 2>&1 || test -x /usr/games/stockfish; }; } || { \
	  echo "installing bubblewrap and stockfish (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq bubblewrap stockfish >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq bubblewrap stockfish >/dev/null; }; }
	@bwrap --version

$(STAMP): pyproject.toml requirements/cpu.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_Q) pip==25.3
	@# torch first and on its own: this pin takes the CPU build from the local disk;
	@# an unpinned torch, pulled in by another package, would fetch a multi-GB CUDA build.
	$(PIP) install $(PIP_Q) torch==2.13.0
	$(PIP) install $(PIP_Q) -c requirements/cpu.lock -e '.[test]'
	@du -sh $(VENV) | awk '{print "venv size: " $$1}'
	touch $@

demo: $(STAMP)
	$(PY) -m core.tune grid=demo

test: $(STAMP) sandbox
	$(PY) -m pytest -q -m "not slow" --durations=30

# the extended end-to-end tests `make test` leaves out to stay under 15 minutes on 2 cores:
# verl's multi-turn agent loop and SFT trainer, SIGINT + resume of a grid, the rm_scaling grid
test-slow: $(STAMP) sandbox
	$(PY) -m pytest -q -m slow --durations=10

# TRL for the GRPO bench only, outside the venv (trl 1.x breaks verl): bench/grpo_vs_trl.py
# puts .bench/site on its path; its dependencies are the venv's own.
BENCH_SITE := .bench/site
$(BENCH_SITE)/.installed:
	$(PIP) install $(PIP_Q) --no-deps --target $(BENCH_SITE) trl==1.16.0
	touch $@

bench: $(STAMP) sandbox $(BENCH_SITE)/.installed
	$(PY) -m bench

# A real local Ray head: submit a smoke grid through the Jobs API, then stop the head.
cluster-smoke: $(STAMP)
	PYTHON=$(abspath $(PY)) bash deploy/ray_job_smoke.sh

# Re-lock the transitive versions after changing a pin in pyproject.toml.
lock: $(STAMP)
	$(PIP) freeze --exclude-editable | grep -v -E "^(-e |torch==)" | sort -f > requirements/cpu.lock

clean:
	rm -rf $(VENV) .bench .cache runs mlflow.db
