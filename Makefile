# Fresh machine: `make demo` (set-up + the demo grid) or `make test` (set-up + all tests).
# Set-up runs once: the stamp file is remade only when pyproject.toml or the lock changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PIP_Q  := --quiet --disable-pip-version-check

.PHONY: setup demo test bench clean lock cluster-smoke sandbox

setup: $(STAMP) sandbox

# The code sandbox (plugins/rewards/sandbox.py) runs model-written programs under bubblewrap.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  echo "installing bubblewrap (Debian package) for the code sandbox"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq bubblewrap >/dev/null; }; }
	@bwrap --version

$(STAMP): pyproject.toml requirements/cpu.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_Q) pip==25.3
	@# torch first and on its own: this pin takes the CPU build from the local disk;
	@# an unpinned torch, pulled in by another package, would fetch a multi-GB CUDA build.
	$(PIP) install $(PIP_Q) torch==2.13.0
	$(PIP) install $(PIP_Q) -c requirements/cpu.lock -e '.[test,bench]'
	@du -sh $(VENV) | awk '{print "venv size: " $$1}'
	touch $@

demo: $(STAMP)
	$(PY) -m core.tune grid=demo

test: $(STAMP) sandbox
	$(PY) -m pytest -q

bench: $(STAMP) sandbox
	$(PY) -m bench

# A real local Ray head: submit a smoke grid through the Jobs API, then stop the head.
cluster-smoke: $(STAMP)
	PYTHON=$(abspath $(PY)) bash deploy/ray_job_smoke.sh

# Re-lock the transitive versions after changing a pin in pyproject.toml.
lock: $(STAMP)
	$(PIP) freeze --exclude-editable | grep -v -E "^(-e |torch==)" | sort -f > requirements/cpu.lock

clean:
	rm -rf $(VENV) .cache runs mlflow.db
