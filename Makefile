# Two commands: `make serve` (set up + run the server) and `make test` (set up + run all checks).
.PHONY: setup serve test lint bench-call

setup:
	bash scripts/setup.sh

serve: setup
	.venv/bin/avatar-rtc serve $(ARGS)

test: setup
	bash scripts/test.sh

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy media inference signaling scripts tests
