# sconet entry points. The README's two commands are `make demo` and `make test`;
# .ci/run calls `make test` on a fresh clone.
#
#   make demo   install into .venv, then synthetic data -> Rust render -> Zarr cache
#               -> train a small CPU model -> standalone evaluation of the saved checkpoint
#   make test   install into .venv (with test extras), then the renderer crate's Rust tests
#               and the default pytest suite
#   make lock   re-pin constraints.txt (the test environment's resolved versions)
#   make lint   ruff (lint + format check), mypy and stubtest on the package; rustfmt and clippy
#   make bench  benchmark scripts (render + cache, training loader)
#   make mutants MODULES=python/sconet/x.py [TESTS=tests/test_x.py]
#               mutation testing of those modules (mutmut); make mutants-rust: cargo-mutants

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sconet-installed
SOURCES := pyproject.toml Cargo.toml $(shell find rust python -type f -not -path '*/__pycache__/*' -not -name '*.so' 2>/dev/null)
DEMO   ?= runs/demo
MODULES ?=
TESTS   ?= tests
MUTMUT  := mutmut==3.8.1
PIP_NET := --retries 10 --timeout 60
# The renderer crate's own tests (the extension itself is built by pip).
CARGO_TEST := cargo test --release --locked --quiet --manifest-path rust/skelmap/Cargo.toml

.PHONY: install lock demo test test-all lint lint-python lint-rust format bench mutants mutants-rust clean

$(STAMP): $(SOURCES) constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_NET) --upgrade pip
	@# constraints.txt pins what the suite last passed with (tools/lock.py); a download cut off
	@# mid-way is resumed by pip, and a failed install is retried (wheels already fetched are cached)
	@for try in 1 2 3; do \
	    $(BIN)/python -m pip install --quiet $(PIP_NET) --resume-retries 20 -c constraints.txt '.[test]' && exit 0; \
	    echo "install: attempt $$try failed" >&2; sleep 15; \
	done; exit 1
	@touch $@

install: $(STAMP)

# re-resolve the test environment's pins (run `make test` afterwards)
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python tools/lock.py

demo: install
	$(BIN)/sconet cache --representation body-only
	$(BIN)/sconet show 00000 --representation body-only --out $(DEMO)-preview.png
	$(BIN)/sconet train --recipe demo-cpu --representation body-only --out $(DEMO) --overwrite
	$(BIN)/sconet eval $(DEMO)/last.pt --json $(DEMO)/eval.json

test: install
	$(CARGO_TEST)
	$(BIN)/python -m pytest

lint: lint-python lint-rust

lint-python: install
	$(BIN)/ruff check python tests bench tools
	$(BIN)/ruff format --check python tests bench tools
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest sconet._skelmap

lint-rust:
	cargo fmt --manifest-path rust/skelmap/Cargo.toml -- --check
	cargo clippy --release --locked --quiet --manifest-path rust/skelmap/Cargo.toml --all-targets -- -D warnings

format: install
	$(BIN)/ruff format python tests bench tools
	$(BIN)/ruff check --fix python tests bench tools
	cargo fmt --manifest-path rust/skelmap/Cargo.toml

test-all: install
	$(CARGO_TEST)
	$(BIN)/python -m pytest -m ''

mutants: install
	@test -n "$(MODULES)" || { echo "usage: make mutants MODULES='python/sconet/a.py ...' [TESTS='tests/test_a.py ...']" >&2; exit 2; }
	$(BIN)/python -m pip install --quiet '$(MUTMUT)'
	$(BIN)/python tools/mutants.py --modules $(MODULES) --tests $(TESTS)

# slow (every mutant rebuilds and tests the crate); needs `cargo install cargo-mutants` once
mutants-rust:
	cargo mutants --manifest-path rust/skelmap/Cargo.toml

bench: install
	$(BIN)/python bench/render.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) target build dist
