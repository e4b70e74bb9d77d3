# The two commands that matter: `make run` (the hub with a sandbox demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ICBRIDGE_PORT ?= 8000
export ICBRIDGE_PORT
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/icbridge
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# The demo and the tests need the emulators under /sandbox/ (on by default only with the development
# secrets): said explicitly here, so exporting a real SECRET_KEY does not take them away.
ICBRIDGE_SANDBOX ?= true
run test test-faults: export ICBRIDGE_SANDBOX := $(ICBRIDGE_SANDBOX)

.PHONY: run test test-faults lint format bench migrations

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: migrate, seed the sandbox demo, start web + worker + sweeper + beat (Procfile; SQLite, filesystem broker unless configured)
run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho --no-colour -f Procfile start

## test: the whole suite against PostgreSQL and Redis (real workers, live sandbox)
test: $(VENV)/.dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(BIN)/pytest --durations=30

## test-faults: only the fault tests
test-faults: $(VENV)/.dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(BIN)/pytest -m faults

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrations: $(VENV)/.dev
	$(BIN)/python manage.py makemigrations --check --dry-run

## bench: every benchmark under bench/, then a summary table
bench: $(VENV)/.dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(BIN)/python bench/run_all.py
