#!/usr/bin/env bash
# Side-by-side benchmark: Idlegrid (SQLite; PostgreSQL with 1, 2 and 3 server instances) against
# Ray, Dask, Celery with Redis and graphile-worker (a PostgreSQL job queue), on this machine, in one
# run. Prints one table per workload.
#
# Usage: bench/run.sh [--tasks N] [--samples N] [--only NAMES] [--skip NAMES]
#        [--large-tasks N] [--submit-tasks N]   (see compare.py)
#   NAMES: comma-separated from idlegrid-sqlite,idlegrid-pg1,idlegrid-pg2,idlegrid-pg3,ray,dask,celery,
#          graphile-worker
# Environment:
#   BENCH_VENV           the virtualenv for Ray, Dask and Celery (default bench/.venv; made if missing)
#   BENCH_POSTGRES       PostgreSQL URL (default postgres://postgres@127.0.0.1:5432/test); each run
#                        uses a fresh schema in it, dropped at the end
#   BENCH_REDIS          Redis URL for Celery (default redis://127.0.0.1:6379/15)
#   BENCH_NODE_MODULES   node_modules with graphile-worker (default bench/.node/node_modules; installed
#                        with npm if missing)
#   IDLEGRID_BIN         an idlegrid binary to measure instead of building target/release/idlegrid
#   IDLEGRID_TASKS_DIR   the folder with noop.wasm instead of building the example tasks
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${BENCH_VENV:-$root/bench/.venv}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "bench: creating the virtualenv $venv (Ray, Dask, Celery with Redis) ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -r "$root/bench/requirements.txt"
fi

node_modules="${BENCH_NODE_MODULES:-$root/bench/.node/node_modules}"
if [[ ! -d "$node_modules/graphile-worker" ]]; then
    echo "bench: installing graphile-worker with npm under $(dirname "$node_modules") ..." >&2
    npm install --silent --no-audit --no-fund --prefix "$(dirname "$node_modules")" graphile-worker@0.16.6 >&2
fi
export BENCH_NODE_MODULES="$node_modules"

if [[ -z "${IDLEGRID_BIN:-}" ]]; then
    echo "bench: building idlegrid (release) ..." >&2
    (cd "$root" && cargo build --release --quiet -p idlegrid-cli)
    export IDLEGRID_BIN="$root/target/release/idlegrid"
fi
if [[ -z "${IDLEGRID_TASKS_DIR:-}" ]]; then
    echo "bench: building the example tasks ..." >&2
    (cd "$root" && cargo xtask build-tasks >&2)
    export IDLEGRID_TASKS_DIR="$root/examples/tasks/target/wasm32-wasip1/release"
fi

exec "$venv/bin/python" "$root/bench/compare.py" "$@"
