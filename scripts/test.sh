#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: lint, then pytest on PostgreSQL and the
# TimescaleDB engine, in two worker processes (pytest-xdist, one test file per worker at a time;
# MQNODE_TEST_WORKERS=0 runs in one process). Extra arguments go to pytest (e.g. scripts/test.sh -k reorg).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/sqlfluff lint sql --disable-progress-bar --nocolor
exec .venv/bin/pytest -q -n "${MQNODE_TEST_WORKERS:-2}" --dist loadfile "$@"
