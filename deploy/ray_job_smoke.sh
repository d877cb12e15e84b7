#!/usr/bin/env bash
# Start a local Ray head with its dashboard, submit a smoke grid through the Jobs API exactly as
# on a cluster (`ray job submit --working-dir . -- python -m core.tune grid=smoke ...`), then stop
# that head. Used by `make cluster-smoke` and tests/core/test_ray_job.py.
#
# - The head keeps its files in a private temp dir; at exit only the processes whose command
#   line names that dir are stopped (`ray stop` would stop every Ray on the machine).
# - The dashboard answers before its job agent is ready ("No available agent to submit job"):
#   the submission is retried until the head accepts it, then followed to its end.
# - Ray 2.60 writes ~/.ray/auth_token on first use; from then on `ray start` and `ray job submit`
#   must agree on RAY_AUTH_MODE, so both run with RAY_AUTH_MODE=token (the token file is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(pwd)/.venv/bin/python}
RAY="$(dirname "$PY")/ray"
OUT=${OUT:-$(mktemp -d)}
GCS_PORT=${GCS_PORT:-6391}
DASH_PORT=${DASH_PORT:-8277}
ADDRESS="http://127.0.0.1:$DASH_PORT"
RAY_TMP=$(mktemp -d /tmp/rjs.XXXXXX)      # short: Ray's socket paths must stay under 107 bytes
export RAY_AUTH_MODE=token

stop_head() {
    pkill -TERM -f -- "$RAY_TMP" 2>/dev/null || true
    for _ in $(seq 1 20); do pgrep -f -- "$RAY_TMP" >/dev/null || break; sleep 0.5; done
    pkill -KILL -f -- "$RAY_TMP" 2>/dev/null || true
    rm -rf "$RAY_TMP"
}
trap stop_head EXIT

"$RAY" start --head --port="$GCS_PORT" --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" \
    --num-cpus=2 --disable-usage-stats --temp-dir="$RAY_TMP" >"$OUT/ray_start.log" 2>&1

ID="smoke-$(date +%s)-$$"
# The entry point names this environment's python: a job's PATH is the head's, not the venv's.
for attempt in $(seq 1 60); do
    if out=$("$RAY" job submit --no-wait --submission-id "$ID" --address "$ADDRESS" --working-dir . -- \
        "$PY" -m core.tune grid=smoke '~grid.axes.model' model=xs 'grid.axes.seed=[0]' \
        data.d_sft=256 sft.steps=30 rl.steps=2 eval.every=2 data.n_eval=12 eval.n_samples=8 \
        eval.k_max=8 rl.prompts_per_step=8 rl.group_size=4 data.d_rl=64 \
        "output_dir=$OUT/runs" "cache_dir=$OUT/cache" "tracking.tracking_uri=sqlite:///$OUT/mlflow.db" 2>&1); then
        break
    fi
    if ! grep -qi "no available agent\|connection refused\|cannot connect" <<<"$out"; then
        echo "$out" >&2
        exit 1
    fi
    [ "$attempt" = 60 ] && { echo "the head never accepted the job: $out" >&2; exit 1; }
    sleep 1     # the job agent comes up some seconds after `ray start` returns
done
"$RAY" job logs --follow --address "$ADDRESS" "$ID" || true
status=$("$RAY" job status --address "$ADDRESS" "$ID" 2>&1)
echo "$status"
grep -q "SUCCEEDED\|succeeded" <<<"$status"
echo "ray job smoke: ok ($OUT)"
