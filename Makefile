# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install everything, run the demo job
#   make test   create .venv, install everything, run the whole test suite
# Both are idempotent: the install step re-runs only when pyproject.toml or this file changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.streamswap-installed
# A GPU box (nvidia-smi answers) gets a CUDA torch and the gpu extra; any other machine the CPU build.
GPU    := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(GPU),1)
# the tested minor: PyPI's Linux wheels of it are CUDA 13 builds
TORCH  := 'torch==2.13.*'
EXTRAS := gpu,lite,train,cluster,bench,serve,dev
ORT    := onnxruntime-gpu
ORT_OFF:= onnxruntime
else
TORCH  := torch==2.13.0
EXTRAS := cpu,lite,train,cluster,bench,serve,dev
ORT    := onnxruntime
ORT_OFF:= onnxruntime-gpu
endif
# Test order is fixed (pytest-randomly off) so a red run reproduces; a shuffled run:
#   make test PYTEST_ARGS="-q -n 2 --dist worksteal --randomly-seed=1234"
PYTEST_ARGS ?= -q -n 2 --dist worksteal --durations=15 -p no:randomly

.PHONY: install demo lint test test-services clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned, so nothing below can pull a different (multi-GB) build
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[$(EXTRAS)]'
	# onnx2torch's metadata wants torchvision, insightface's the CPU onnxruntime: install both
	# without their metadata's dependencies (their real needs are in pyproject.toml)
	$(PIP) install -q --no-deps onnx2torch==1.5.15 insightface==2.1
	# exactly one onnxruntime package: the two overwrite one module and break each other
	$(PIP) uninstall -q -y $(ORT_OFF) 2>/dev/null || true
	$(PY) -c "import onnxruntime as o; o.InferenceSession" 2>/dev/null || \
		{ $(PIP) uninstall -q -y onnxruntime onnxruntime-gpu; $(PIP) install -q $(ORT); }
	$(PY) -m streamswap doctor > /dev/null || $(PY) -m streamswap doctor
	touch $(STAMP)

demo: install
	$(VENV)/bin/streamswap demo

# The RTSP loopback tests need a local RTSP server, the serve browser test Debian's chromium; install
# them where we may (CI runs as root), otherwise those tests skip and say why.
test-services:
	@command -v rtsp-server-perl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq rtsp-server-perl >/dev/null) || \
		echo "note: rtsp-server-perl not installed; RTSP tests will skip"; }
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "note: chromium not installed; the serve browser test will skip"; }

# Lint, format and types first (seconds), then the suite
lint: install
	$(PY) -m ruff check streamswap
	$(PY) -m ruff format --check streamswap
	$(PY) -m mypy

test: install test-services lint
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
