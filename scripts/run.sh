#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the MQNODE demo on the embedded default: a local PostgreSQL under
# .mqnode/, sim-node replaying the real early chain then mining live, and the chain listener.
# With MQNODE_BTC_RPC_URL (and credentials) and/or MQNODE_DATABASE_URL set, it uses those instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mqnode demo "$@"
