# stylegan-core: one virtual environment in .venv, the package installed editable
# with its compiled ops. `make demo` trains the embedded default; `make test` runs the tests.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.stylegan-installed
# torch/torchvision are pinned to the releases that lie on these machines' disk.
TORCH   := torch==2.14.1 torchvision==0.29.1
SOURCES := setup.py $(wildcard setup_ext.py) $(shell find stylegan_core/csrc -type f 2>/dev/null) \
           $(shell find examples -name pyproject.toml 2>/dev/null)

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel ninja
	$(BIN)/python -m pip install --quiet $(TORCH)
	MAX_JOBS=$${MAX_JOBS:-2} $(BIN)/python -m pip install --no-build-isolation -e '.[test]'
	$(BIN)/python -c "from stylegan_core.ops import _compiled as C; print('stylegan_core._C:', \
	  ('built, CUDA kernels ' + ('compiled in' if C.built_with_cuda() else 'not built')) if C.available() \
	  else 'not built (%s)' % C.load_error())"
	touch $@

demo: setup
	$(BIN)/stylegan-build && $(BIN)/stylegan-run

test: setup
	$(BIN)/python -m pytest -q --durations=15

bench: setup  # the whole suite, one run: ops vs ref, models x resolutions, resolution x batch
	$(BIN)/python bench/suite.py $(BENCH_ARGS)

clean:
	rm -rf build dist *.egg-info stylegan_core/_C*.so
