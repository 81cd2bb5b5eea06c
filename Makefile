# Mark-1 Realtime. `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY ?= python3
FRONTEND := frontend-example

.PHONY: demo test lint bench bench-10k soak serve env frontend clients schema clean token

$(UV):
	@command -v uv >/dev/null 2>&1 || $(PY) -m pip install --user --quiet uv || $(PY) -m pip install --quiet --break-system-packages uv

env: $(UV)
	@$(UV) sync --frozen --quiet

# The dashboard and offline GraphiQL are built when npm is available.
frontend:
	@if command -v npm >/dev/null 2>&1 && [ -f $(FRONTEND)/package.json ]; then \
		echo "building $(FRONTEND) (dashboard at /app, GraphiQL at /graphql)"; \
		cd $(FRONTEND) && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent; \
	else echo "npm not found: skipping the dashboard build (the API works without it)"; fi

# Real JavaScript clients the tests drive (graphql-ws, subscriptions-transport-ws, graphql-http audit,
# Apollo Client's persisted-query link and multipart subscriptions, graphql-sse, urql).
clients:
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the JavaScript client tests will skip"; fi

demo: env frontend
	@$(UV) run mark1 demo

serve: env
	@$(UV) run mark1 serve

# A development token signed with this install's secret: export TOKEN=$$(make token)
SUB ?= $(or $(USER),dev)
ROLE ?= OPERATOR
token: env
	@.venv/bin/mark1 token --sub "$(SUB)" --role "$(ROLE)"

schema: env
	@$(UV) run mark1 export-schema > schema.graphql

lint: env
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy api resolvers client/mark1_client

test: env frontend clients lint
	$(UV) run pytest

# The write path beside its floors, then fan-out beside the Node graphql-js +
# graphql-ws reference and the raw uvicorn floor.
bench: env
	$(UV) run python -m bench.writes
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix bench/node-reference --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Node reference is skipped"; fi
	$(UV) run python -m bench.compare

# Two processes on Redis + PostgreSQL, 2,000 subscribers, four writers, 10 minutes
# (SOAK_SECONDS, SOAK_SUBSCRIBERS, SOAK_RATE: bench/soak.py). Exits 1 on any lost,
# duplicated or reordered event, or RSS growing more than 5 % after warm-up.
soak: env
	$(UV) run python -m bench.soak

# 10,000 subscribers in one process (memory per connection, 5 events/s to all).
bench-10k: env
	$(UV) run python -m bench.compare --only "10k" --ten-thousand

clean:
	rm -rf .mark1 .pytest_cache .mypy_cache .ruff_cache
