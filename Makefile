# Quickstart: `make search` then `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APT_PKGS := pkg-config libopencv-dev libturbojpeg0-dev

.PHONY: venv search test test-all lint benchmark clean slurm-up slurm-down

$(VENV)/.installed: pyproject.toml
	@if [ "$$(id -u)" = "0" ] && ! (pkg-config --exists opencv4 && pkg-config --exists libturbojpeg) 2>/dev/null; then \
		echo "installing apt packages for FFCV: $(APT_PKGS)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

venv: $(VENV)/.installed

search: venv
	$(PY) search.py

test: venv
	$(PY) -m pytest -m "not slow" -q

test-all: venv
	$(PY) -m pytest -q

# a one-node SLURM cluster on this machine for configs/slurm/*.sbatch (tests/test_slurm.py brings it up itself)
slurm-up:
	bash configs/slurm/local_cluster.sh up

slurm-down:
	bash configs/slurm/local_cluster.sh down

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
