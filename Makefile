# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
DEMO := freezestudio/resources/demo/cnn_transfer.keras

.PHONY: run test lint package clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/freezestudio $(DEMO)

test: $(STAMP_TEST)
	QT_QPA_PLATFORM=offscreen TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# A one-folder build in dist/freezestudio/ (PyInstaller, packaging/freezestudio.spec); not in CI.
package: $(STAMP_RUN)
	$(BIN)/python -m pip install --quiet pyinstaller
	$(BIN)/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
		packaging/freezestudio.spec
	dist/freezestudio/freezestudio --version

clean:
	rm -rf $(VENV) build dist
