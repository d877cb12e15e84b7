#!/usr/bin/env bash
# Start a local Ray head with its dashboard, submit a smoke grid through the Jobs API exactly as
# on a cluster (`ray job submit --working-dir . -- python -m core.tune grid=demo ...`), then stop
# the head. Used by `make cluster-smoke` and tests/core/test_ray_job.py.
#
# Ray 2.60 writes ~/.ray/auth_token on first use; from then on `ray start` and `ray job submit`
# must agree on RAY_AUTH_MODE, so both run with RAY_AUTH_MODE=token (the token file is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(pwd)/.venv/bin/python}
RAY="$(dirname "$PY")/ray"
OUT=${OUT:-$(mktemp -d)}
GCS_PORT=${GCS_PORT:-6391}
DASH_PORT=${DASH_PORT:-8277}
export RAY_AUTH_MODE=token

"$RAY" start --head --port="$GCS_PORT" --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" \
    --num-cpus=2 --disable-usage-stats >"$OUT/ray_start.log" 2>&1
trap '"$RAY" stop --force >/dev/null 2>&1 || true' EXIT

# The entry point names this environment's python: a job's PATH is the head's, not the venv's.
"$RAY" job submit --address "http://127.0.0.1:$DASH_PORT" --working-dir . -- \
    "$PY" -m core.tune grid=demo '~grid.axes.model' model=xs 'grid.axes.seed=[0]' \
    data.d_sft=256 sft.steps=30 rl.steps=2 eval.every=2 data.n_eval=12 eval.n_samples=8 \
    eval.k_max=8 rl.prompts_per_step=8 rl.group_size=4 data.d_rl=64 \
    "output_dir=$OUT/runs" "cache_dir=$OUT/cache" "tracking.tracking_uri=sqlite:///$OUT/mlflow.db"
echo "ray job smoke: ok ($OUT)"
