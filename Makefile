# InfiniTrain developer entry points. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "Python's venv module is missing: sudo apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.base: requirements/base.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.dev: requirements/base.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $@ $(VENV)/.base

## Set up and run the whole system locally: API on 127.0.0.1:8080, a worker, a monitor.
run: $(VENV)/.base
	$(BIN)/python manage.py runlocal

## Run the whole test suite (SQLite by default; set DATABASE_URL for PostgreSQL).
test: $(VENV)/.dev
	@command -v redis-server >/dev/null || [ -n "$$INFINITRAIN_TEST_REDIS_URL" ] || \
	  { echo "The tests start their own redis-server: sudo apt-get install redis-server" >&2; exit 1; }
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.dev
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
