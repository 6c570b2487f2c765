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

.PHONY: help install native run chromium lint typecheck unit integration pytest test sam-validate sam-build clean bench fuzz load

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 is required (the Lambda runtime is python3.12)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP) native ## create .venv with the project and its dev tools

# The compiled candidate selection (personalize_core/serving/native.py): optional, numpy scores without it.
# The layer build compiles its own copy for the target (layers/core/Makefile).
CC             ?= cc
NATIVE_SOURCE  := layers/core/personalize_core/serving/_select.c
NATIVE_LIBRARY := layers/core/personalize_core/serving/_select.so
NATIVE_CFLAGS  := -O3 -fPIC -shared -Wall -Wextra
$(NATIVE_LIBRARY): $(NATIVE_SOURCE)
	@if command -v $(CC) >/dev/null; then $(CC) $(NATIVE_CFLAGS) -o $@ $< && echo "built $@"; \
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

test: lint typecheck pytest sam-validate sam-build ## everything CI runs

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

build: $(SAM_STAMP) ## sam build into .aws-sam/build for ARCH (x86_64 | arm64; default x86_64)
	$(SAM_ENV) LAMBDA_ARCH=$(ARCH) $(SAM) build --parameter-overrides Architecture=$(ARCH)
	@$(call check_layer,.aws-sam/build,$(ARCH))

deploy: build ## sam deploy the build (Architecture=ARCH; more overrides: PARAMS="AuthMode=API_KEY ...")
	$(SAM) deploy --parameter-overrides Architecture=$(ARCH) $(PARAMS)

sam-build: sam-build-x86_64 sam-build-arm64 ## sam build for x86_64 and arm64, checking numpy's machine code

sam-build-x86_64 sam-build-arm64: sam-build-%: $(SAM_STAMP)
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
	if test -e "$$kernel"; then \
	  got=$$(od -An -tx2 -j18 -N2 "$$kernel" | tr -d ' '); echo "$(2): _select.so: e_machine $$got"; \
	  test "$$got" = "$$want" || { echo "FAIL: _select.so in $$layer is not built for $(2)"; exit 1; }; \
	else echo "$(2): no _select.so (scoring takes its numpy path)"; fi; \
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
