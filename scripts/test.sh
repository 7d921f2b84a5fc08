#!/usr/bin/env bash
# The whole check: lint, format, types, then every test (unit, loopback end-to-end, browser).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy media inference signaling scripts tests
mkdir -p artifacts
pytest -q -p no:cacheprovider --durations=15 "$@"
