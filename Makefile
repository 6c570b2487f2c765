# Lambda Personalize: every task a newcomer needs is a target here.
#   make run    - the whole stack locally (embedded AWS on loopback), demo model, API on :3000
#   make test   - lint, type-check, every test, and the SAM template checks
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime is python3.12: use a 3.12 for the dev venv when the machine has one
# (pyenv keeps it out of PATH unless selected, so look there too).
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 python3; do \
             $$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install native run chromium cross-tools arm64-test lint typecheck unit integration pytest test sam-validate sam-build clean bench fuzz load

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 is required (the Lambda runtime is python3.12)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP) native ## create .venv with the project and its dev tools

# The compiled kernels (personalize_core/serving/native.py: the item scan and candidate selection):
# optional, numpy scores without them. The layer build compiles its own copy for the target
# (layers/core/Makefile), cross-compiling for arm64.
CC             ?= cc
NATIVE_DIR     := layers/core/personalize_core/serving
NATIVE_SOURCE  := $(NATIVE_DIR)/_select.c $(NATIVE_DIR)/_planes.c
NATIVE_LIBRARY := $(NATIVE_DIR)/_select.so
NATIVE_CFLAGS  := -O3 -fPIC -shared -Wall -Wextra
$(NATIVE_LIBRARY): $(NATIVE_SOURCE) $(NATIVE_DIR)/_kernels.h
	@if command -v $(CC) >/dev/null; then $(CC) $(NATIVE_CFLAGS) -o $@ $(NATIVE_SOURCE) && echo "built $@"; \
	else echo "no C compiler ($(CC)): scoring uses its numpy path"; fi
native: $(NATIVE_LIBRARY) ## compile the candidate-selection kernel (needs a C compiler; optional)

# The local runtime's options also read LAMBDA_PERSONALIZE_PORT / _AWS_PORT / _DATA_DIR; or pass
# them here: make run PORT=3001 AWS_PORT=5051 DATA_DIR=/tmp/demo ARGS="--verbose"
RUN_OPTIONS := $(if $(PORT),--port $(PORT)) $(if $(AWS_PORT),--aws-port $(AWS_PORT)) \
               $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)
run: $(STAMP) native ## the whole stack locally: embedded AWS, demo model, the API on 127.0.0.1:3000, /console
	$(BIN)/lambda-personalize run $(RUN_OPTIONS)

# The console's browser test drives Debian's chromium (a browser a test tool downloads itself
# cannot be fetched here). CI runs as root; elsewhere apt-get runs through sudo.
CHROMIUM ?= /usr/bin/chromium
chromium: ## install Debian's chromium for the browser test, when it is missing
	@test -x $(CHROMIUM) || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@$(CHROMIUM) --version

# arm64: the layer's kernels are cross-compiled with Debian's gcc-aarch64-linux-gnu, and their own
# tests (tests/unit/test_native.py) run on an aarch64 Python under qemu-user: Debian's
# libpython3.11:arm64 (multiarch, beside the host's Python) behind CPython's main
# (tests/arm64/python_main.c), with PyPI's manylinux aarch64 numpy, pytest and hypothesis.
# Like `make chromium`, cross-tools installs the packages with apt-get when they are missing.
ARM64_DIR      := .tools/arm64
ARM64_LIBRARY  := /usr/lib/aarch64-linux-gnu
ARM64_PACKAGES := gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libpython3.11:arm64 libstdc++6:arm64
ARM64_WHEELS   := 'numpy>=2.2,<3' 'pytest>=8,<10' 'hypothesis>=6,<7'
cross-tools: ## Debian's aarch64 cross-compiler, qemu-user and an aarch64 libpython (apt-get, when missing)
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null && \
	  test -e $(ARM64_LIBRARY)/libpython3.11.so.1.0 && test -e $(ARM64_LIBRARY)/libstdc++.so.6 || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO dpkg --add-architecture arm64 && $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(ARM64_PACKAGES) >/dev/null; }
	@aarch64-linux-gnu-gcc --version | head -n 1; qemu-aarch64 --version | head -n 1

$(ARM64_DIR)/.installed: tests/arm64/python_main.c | $(STAMP) cross-tools
	rm -rf $(ARM64_DIR) && mkdir -p $(ARM64_DIR)
	aarch64-linux-gnu-gcc -O2 -o $(ARM64_DIR)/python3 $< $(ARM64_LIBRARY)/libpython3.11.so.1.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --target $(ARM64_DIR)/site \
	  --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
	  --implementation cp --python-version 3.11 --only-binary=:all: $(ARM64_WHEELS)
	@touch $@

arm64-test: $(ARM64_DIR)/.installed ## the kernels' own tests on aarch64: cross-compiled as the layer build does, run under qemu-user
	rm -rf $(ARM64_DIR)/layer && mkdir -p $(ARM64_DIR)/layer
	cp -R layers/core/personalize_core $(ARM64_DIR)/layer/
	find $(ARM64_DIR)/layer -depth -name __pycache__ -type d -exec rm -rf {} + ; rm -f $(ARM64_DIR)/layer/personalize_core/serving/*.so
	$(MAKE) --no-print-directory -C layers/core native-kernel LAMBDA_ARCH=arm64 \
	  OUT=$(CURDIR)/$(ARM64_DIR)/layer/personalize_core/serving/_select.so
	PYTHONPATH=$(ARM64_DIR)/layer:$(ARM64_DIR)/site PYTHONDONTWRITEBYTECODE=1 qemu-aarch64 -L / $(ARM64_DIR)/python3 \
	  -c 'import platform, numpy; print("arm64-test:", platform.machine(), "numpy", numpy.__version__)'
	PYTHONPATH=$(ARM64_DIR)/layer:$(ARM64_DIR)/site PYTHONDONTWRITEBYTECODE=1 qemu-aarch64 -L / $(ARM64_DIR)/python3 \
	  -m pytest -q -p no:cacheprovider --noconftest tests/unit/test_native.py

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy (strict): the layer, the tooling, and each function (all called app.py)
	$(BIN)/mypy
	@for f in functions/*/app.py; do $(BIN)/mypy --no-error-summary $$f || exit 1; done

unit: $(STAMP) native ## the unit tests (tests/unit: no AWS, no network; seconds)
	$(BIN)/pytest -n auto -q tests/unit

integration: $(STAMP) native chromium ## the integration tests (tests/integration: moto's server, real HTTP, chromium)
	$(BIN)/pytest -n auto -q tests/integration

pytest: $(STAMP) native chromium ## every test (unit + integration + the fuzz suites' CI size), in parallel
	$(BIN)/pytest -n auto -q

test: lint typecheck pytest arm64-test sam-validate sam-build ## everything CI runs

# The soak runs of issue 6: the same tests as CI, many times bigger; both stop by themselves.
FUZZ_EXAMPLES         ?= 3000
SCHEMATHESIS_EXAMPLES ?= 1000
fuzz: $(STAMP) ## bad input at every operation: FUZZ_EXAMPLES hypothesis cases (x1/3 per control-plane op), schemathesis
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SCHEMATHESIS_EXAMPLES=$(SCHEMATHESIS_EXAMPLES) $(BIN)/pytest -n auto -q tests/fuzz

LOAD_REQUESTS ?= 20000
LOAD_CLIENTS  ?= 16
load: $(STAMP) ## local runtime under load (errors, req/s, p99), switches under load, a 1M-line batch job
	$(BIN)/python -m benchmarks.local_load --requests $(LOAD_REQUESTS) --clients $(LOAD_CLIENTS) --duration 300
	LOAD_REQUESTS=$(LOAD_REQUESTS) LOAD_CLIENTS=$(LOAD_CLIENTS) BATCH_SCALE_LINES=1000000 BATCH_SCALE_ID_PAD=0 \
	  $(BIN)/pytest -q -s tests/integration/test_load.py tests/integration/test_batch_scale.py

BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS  ?=

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

bench: $(BENCH_STAMP) native ## performance: ours vs faiss, numpy and the memory floor (BENCH_ARGS=--quick: a minute)
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

clean: ## remove build outputs and the venv
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache

# ---------------------------------------------------------------- SAM packaging
# The SAM CLI lives in its own venv (.tools/sam): it pins boto3 & co. differently from .venv.
# `sam build` of python3.12 functions needs a python3.12 on PATH: the tools venv's own, when
# $(PYTHON) is a 3.12 (it is whenever the machine has one).
#   make build                 - sam build for x86_64 into .aws-sam/build, then `sam deploy` works
#   ARCH=arm64 make build      - the same for arm64 (then deploy with: ARCH=arm64 make deploy)
#   make deploy PARAMS="AuthMode=API_KEY"   - sam deploy (guided by samconfig.toml), Architecture=$(ARCH)
#   make sam-build             - build both architectures into .aws-sam/<arch>/build and check numpy
# The architecture reaches the layer build (layers/core/Makefile) through LAMBDA_ARCH: SAM passes
# nothing about it to makefile builds, so every sam build here sets it together with the
# template's Architecture parameter.
SAM_CLI_VERSION ?= 1.170.0
SAM_VENV  := .tools/sam
SAM       := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)
SAM_ENV   := PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH"
ARCH      ?= x86_64
PARAMS    ?=
export SAM_CLI_TELEMETRY := 0

.PHONY: sam-tools build deploy sam-build-x86_64 sam-build-arm64

$(SAM_STAMP):
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 is required (the Lambda runtime is python3.12)"; exit 1; }
	rm -rf $(SAM_VENV)
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli==$(SAM_CLI_VERSION)'
	@$(SAM_VENV)/bin/python -c 'import sys; sys.version_info[:2] == (3, 12) or print("warning: sam build of python3.12 functions needs a python3.12 on PATH")'
	@touch $@

sam-tools: $(SAM_STAMP) ## install the SAM CLI into .tools/sam

sam-validate: $(SAM_STAMP) ## sam validate --lint (SAM schema + cfn-lint)
	$(SAM) validate --lint

build: $(SAM_STAMP) $(if $(filter arm64,$(ARCH)),cross-tools) ## sam build into .aws-sam/build for ARCH (x86_64 | arm64; default x86_64)
	$(SAM_ENV) LAMBDA_ARCH=$(ARCH) $(SAM) build --parameter-overrides Architecture=$(ARCH)
	@$(call check_layer,.aws-sam/build,$(ARCH))

deploy: build ## sam deploy the build (Architecture=ARCH; more overrides: PARAMS="AuthMode=API_KEY ...")
	$(SAM) deploy --parameter-overrides Architecture=$(ARCH) $(PARAMS)

sam-build: sam-build-x86_64 sam-build-arm64 ## sam build for x86_64 and arm64, checking numpy's and the kernels' machine code

sam-build-x86_64 sam-build-arm64: sam-build-%: $(SAM_STAMP) cross-tools
	$(SAM_ENV) LAMBDA_ARCH=$* $(SAM) build --parameter-overrides Architecture=$* \
	  --build-dir .aws-sam/$*/build --cache-dir .aws-sam/$*/cache
	@$(call check_layer,.aws-sam/$*/build,$*)

# check_layer(build dir, arch): the layer holds personalize_core and a numpy compiled for arch
# (ELF e_machine 0x3e = x86-64, 0xb7 = aarch64), and no botocore to shadow the runtime's.
define check_layer
	layer="$(1)/CoreLayer/python"; \
	want=$$(case "$(2)" in x86_64) echo 003e;; arm64) echo 00b7;; esac); \
	test -d "$$layer/personalize_core" || { echo "FAIL: $$layer/personalize_core is missing"; exit 1; }; \
	test ! -e "$$layer/botocore" || { echo "FAIL: $$layer/botocore would shadow the runtime's"; exit 1; }; \
	so=$$(ls "$$layer"/numpy/_core/_multiarray_umath*.so 2>/dev/null | head -n 1); \
	test -n "$$so" || { echo "FAIL: no numpy extension in $$layer"; exit 1; }; \
	got=$$(od -An -tx2 -j18 -N2 "$$so" | tr -d ' '); \
	echo "$(2): $$(basename "$$so"): e_machine $$got, $$(grep -h '^Tag:' "$$layer"/numpy-*.dist-info/WHEEL | tr '\n' ' ')"; \
	if command -v file >/dev/null; then file -b "$$so" | cut -d, -f1-2; fi; \
	test "$$got" = "$$want" || { echo "FAIL: numpy in $$layer is not built for $(2)"; exit 1; }; \
	kernel="$$layer/personalize_core/serving/_select.so"; \
	test -e "$$kernel" || { echo "FAIL: no kernels (_select.so) in $$layer (make cross-tools)"; exit 1; }; \
	got=$$(od -An -tx2 -j18 -N2 "$$kernel" | tr -d ' '); echo "$(2): _select.so: e_machine $$got"; \
	test "$$got" = "$$want" || { echo "FAIL: _select.so in $$layer is not built for $(2)"; exit 1; }; \
	training="$(1)/TrainingLayer/python"; \
	als=$$(ls "$$training"/implicit/cpu/_als*.so 2>/dev/null | head -n 1); \
	test -n "$$als" || { echo "FAIL: no implicit ALS extension in $$training"; exit 1; }; \
	got=$$(od -An -tx2 -j18 -N2 "$$als" | tr -d ' '); echo "$(2): $$(basename "$$als"): e_machine $$got"; \
	test "$$got" = "$$want" || { echo "FAIL: implicit in $$training is not built for $(2)"; exit 1; }; \
	test ! -e "$$training/numpy" || { echo "FAIL: $$training/numpy would shadow CoreLayer's"; exit 1; }; \
	size=$$(du -sb "$$layer" "$$training" "$(1)/TrainingFunction" | awk '{s += $$1} END {print s}'); \
	echo "$(2): training function + CoreLayer + TrainingLayer unzipped: $$((size / 1048576)) MiB (Lambda's limit: 250 MiB)"; \
	test "$$size" -le 262144000 || { echo "FAIL: the training function is over Lambda's 250 MB"; exit 1; }
endef
