# Quick start: `make run` (job on the bundled sample) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
CONFIG ?= conf/alm_pipeline.yaml
SRC    := $(wildcard alm_spark jobs tests benchmarks)

MASTER ?= local[*]
# Wheels of the project and every dependency, for the packaging tests (installed --no-index).
WHEELHOUSE ?= $(CURDIR)/.wheelhouse

# Older Spark lines CI also tests (Spark layer and golden cases), each with its own pins.
SPARK_LINES := 3.5 4.0
SPARK_TESTS ?= -m "spark and not ($(SLOW_MARKS))"
# Left out by `make quick` (the developer loop) and run alone by `make test-slow`;
# `make test` (what CI runs) runs everything.
SLOW_MARKS := slow or cluster or connect or packaging
# pytest-xdist processes: the tests of a module-scoped fixture stay in one of them, and one
# runs every test of the shared cluster or Connect server (tests/conftest.py).
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# `make golden` (maintainers only, not CI): NeMo Curator's own stages in their own venv.
GOLDEN_VENV  := .venv-golden
NEMO_CURATOR_VERSION := 1.4.0
TORCH_VERSION := 2.13.0
# A local torch wheel file to install instead of torch==$(TORCH_VERSION) from the index
# (these machines keep one in /opt/wheels).
TORCH_WHEEL ?= $(firstword $(wildcard /opt/wheels/torch-$(TORCH_VERSION)+cpu-*.whl))
GOLDEN_STAMP := $(GOLDEN_VENV)/.installed-nemo-curator-$(NEMO_CURATOR_VERSION)-torch-$(TORCH_VERSION)

.PHONY: help install jvm-archive run run-audio submit wheelhouse test quick test-slow test-all test-lhotse test-spark-lines $(SPARK_LINES:%=test-spark-%) unit lint format bench bench-smoke golden clean java-check

help:
	@echo "make run    - run the job on the bundled sample into ./alm_output (ARGS='section.key=value ...')"
	@echo "make submit - spark-submit the job from the venv (MASTER=spark://host:7077, SUBMIT_ARGS='--conf k=v', ARGS as for run)"
	@echo "make wheelhouse - wheels of the project and its dependencies, for the packaging tests"
	@echo "make run-audio - generated conversations with audio, cut into WebDataset shards"
	@echo "make test-spark-3.5, test-spark-4.0 - the Spark layer and golden cases on older Spark lines"
	@echo "make test-lhotse - Lhotse Shar shards read by the real lhotse (with torch), in .venv-lhotse"
	@echo "make test   - lint, type-check and run the whole suite, cluster, Connect and packaging tests included (what CI runs)"
	@echo "make quick  - lint, type-check and the suite but the slow tests: the developer loop (PYTEST_ARGS='-k ...')"
	@echo "make test-slow - only the slow tests: oracle sweeps, spark-submit, SIGKILL, cluster, Connect, packaging, benchmarks"
	@echo "make unit   - only the fast tests that need no Spark"
	@echo "make bench  - benchmarks against a plain script and Spark's I/O floor, and the audio step against NeMo-style snippet cutting (docs/PERFORMANCE.md)"
	@echo "make golden - maintainers: regenerate tests/golden/expected and SHA256SUMS with NeMo Curator $(NEMO_CURATOR_VERSION) in $(GOLDEN_VENV) (TORCH_WHEEL=/path/to/torch.whl)"

# --no-compile: Python compiles what it imports when it first imports it; compiling every
# module of pyspark and pandas ahead took most of an install.
$(STAMP): pyproject.toml constraints.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -c constraints.txt -e '.[spark,connect,test,dev,audio,s3,s3-tests]'
	touch $@

install: $(STAMP)

java-check:
	@command -v java >/dev/null 2>&1 || { \
	  echo "error: Java 17 or newer is required (Spark runs on the JVM) and 'java' is not on PATH." >&2; \
	  echo "       Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17" >&2; \
	  exit 1; }

run: $(STAMP) java-check
	$(BIN)/alm-spark run --config $(CONFIG) $(ARGS)

# Two generated conversations with matching audio (WAV and FLAC, ~20 minutes), cut into
# WebDataset shards: the audio step on a laptop.
run-audio: $(STAMP) java-check
	$(BIN)/python -m alm_spark.testing.datagen --profile demo --lines 2 --audio --out alm_audio_demo/demo.jsonl
	$(BIN)/alm-spark run --config $(CONFIG) input.manifest_path=alm_audio_demo/demo.jsonl \
	  output.path=alm_audio_output audio.enabled=true $(ARGS)

submit: $(STAMP) java-check
	$(BIN)/alm-spark submit --master '$(MASTER)' $(SUBMIT_ARGS) -- --config $(CONFIG) $(ARGS)

wheelhouse: $(STAMP)
	rm -f $(WHEELHOUSE)/alm_spark-*.whl
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check -c constraints.txt \
	  -w $(WHEELHOUSE) '.[spark]' venv-pack
	@echo "wheelhouse: $(WHEELHOUSE) (the packaging tests use it: ALM_SPARK_WHEELHOUSE=$(WHEELHOUSE))"

# Rebuilt when the package's files change, so the packaging tests install this checkout.
PACKAGE_FILES := $(shell find alm_spark jobs -type f -not -name '*.pyc' 2>/dev/null)
$(WHEELHOUSE)/.built: $(STAMP) pyproject.toml constraints.txt $(PACKAGE_FILES)
	$(MAKE) --no-print-directory wheelhouse WHEELHOUSE=$(WHEELHOUSE)
	touch $@

.venv-spark%/.installed: pyproject.toml constraints-%.txt
	rm -rf .venv-spark$*
	$(PYTHON) -m venv .venv-spark$*
	.venv-spark$*/bin/python -m pip install --quiet --disable-pip-version-check --no-compile \
	  -c constraints-$*.txt -e '.[spark,test,audio]'
	touch $@

$(SPARK_LINES:%=test-spark-%): test-spark-%: .venv-spark%/.installed java-check
	.venv-spark$*/bin/python -m pytest $(SPARK_TESTS) $(XDIST) -p no:cacheprovider $(PYTEST_ARGS)

# Lhotse Shar read by the real lhotse, in its own venv: lhotse needs torch (from the local
# wheel when there is one) and imports urllib3 without declaring it.
LHOTSE_VERSION := 1.33.0
.venv-lhotse/.installed: pyproject.toml constraints.txt
	rm -rf .venv-lhotse
	$(PYTHON) -m venv .venv-lhotse
	.venv-lhotse/bin/python -m pip install --quiet --disable-pip-version-check --no-compile \
	  -c constraints.txt $(or $(TORCH_WHEEL),torch==$(TORCH_VERSION)) lhotse==$(LHOTSE_VERSION) \
	  urllib3 -e '.[spark,test,audio]'
	touch $@

test-lhotse: .venv-lhotse/.installed java-check
	.venv-lhotse/bin/python -m pytest tests/test_shar_lhotse.py -p no:cacheprovider $(PYTEST_ARGS)

test-spark-lines: $(SPARK_LINES:%=test-spark-%)

# The class-data archive every JVM of the suite starts from (tests/jvm.py): made once
# per Java and pyspark, in .cache/jvm, by a run of the sample (~35 s); a JVM's start then
# costs ~5 CPU seconds less. Without it the suite runs, slower.
jvm-archive: $(STAMP) java-check
	@$(BIN)/python -m tests.jvm

# What a suite needs first (lint, the wheelhouse, the class-data archive) does not depend on
# each other: made side by side, each one's console kept whole, then the suite runs.
SIDE_BY_SIDE := $(MAKE) --no-print-directory -j3 --output-sync=target

# The packaging tests install from the wheelhouse: built first when missing.
test: $(STAMP) java-check
	@$(SIDE_BY_SIDE) lint $(WHEELHOUSE)/.built jvm-archive
	ALM_SPARK_WHEELHOUSE=$(WHEELHOUSE) $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

quick: $(STAMP) java-check
	@$(SIDE_BY_SIDE) lint jvm-archive
	$(BIN)/python -m pytest -m "not ($(SLOW_MARKS))" $(XDIST) $(PYTEST_ARGS)

test-slow: $(STAMP) java-check
	@$(SIDE_BY_SIDE) $(WHEELHOUSE)/.built jvm-archive
	ALM_SPARK_WHEELHOUSE=$(WHEELHOUSE) $(BIN)/python -m pytest -m "$(SLOW_MARKS)" $(XDIST) $(PYTEST_ARGS)

test-all: test

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not spark and not ($(SLOW_MARKS))" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format $(SRC)
	$(BIN)/ruff check --fix $(SRC)

bench: $(STAMP) java-check
	$(BIN)/python benchmarks/window_logic.py
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/audio_bench.py $(AUDIO_BENCH_ARGS)

bench-smoke: $(STAMP) java-check
	$(BIN)/python benchmarks/window_logic.py --repeat 1
	$(BIN)/python benchmarks/bench.py --smoke

# The reference's own stages rebuild the golden files (tests/golden/README.md); not part of
# `make test`. `GOLDEN_ARGS=--check` writes nothing and fails if a file would change.
$(GOLDEN_STAMP):
	rm -rf $(GOLDEN_VENV)
	$(PYTHON) -m venv $(GOLDEN_VENV)
	$(GOLDEN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  '$(or $(TORCH_WHEEL),torch==$(TORCH_VERSION))' 'nemo-curator==$(NEMO_CURATOR_VERSION)'
	touch $@

golden: $(GOLDEN_STAMP)
	$(GOLDEN_VENV)/bin/python tests/golden/regenerate.py $(GOLDEN_ARGS)

clean:
	rm -rf $(VENV) .cache .venv-spark* .venv-lhotse $(GOLDEN_VENV) $(WHEELHOUSE) alm_output alm_audio_demo alm_audio_output .pytest_cache .mypy_cache .ruff_cache *.egg-info
