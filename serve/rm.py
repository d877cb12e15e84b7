"""Reward models on the command line: train one (``core/rm.py``) or serve them (``serve/app.py``).

    python -m serve.rm train grid=rm_scaling reward.rm.size=s reward.rm.d_rm=500
        train (or find) the RM this config asks for; logs a run to MLflow; prints its id
    python -m serve.rm up --ladder tiny [--sizes xs,s] [--port 8000] [--token T]
        start a local Ray + Serve with one app per RM size class; prints the URLs

Training and its cache (``ensure_rm``) live in ``core/rm.py``; the endpoint serves the cache's
checkpoints by key.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from core.rm import checkpoint_root, ensure_rm

# --- command line ----------------------------------------------------------------------------------
def _train(argv: list[str]) -> int:
    from core.config import load
    from core.tracking import Tracker, tracking_uri
    grid = next((a.split("=", 1)[1] for a in argv if a.startswith("grid=")), "rm_scaling")
    cfg = load(grid, [a for a in argv if not a.startswith("grid=")])
    key, path, metrics = ensure_rm(cfg)
    info = json.loads((path / "rm.json").read_text())
    uri = tracking_uri(cfg)
    tracker = Tracker(uri, cfg.tracking.experiment or "reward_models")
    run = tracker.client.create_run(tracker.experiment_id, tags={
        "mlflow.runName": f"rm {cfg.reward.rm.size} d_rm={cfg.reward.rm.d_rm}", "rm_key": key,
        "pairs_fingerprint": info["pairs_fingerprint"], "checkpoint": str(path)})
    for k, v in {"size": cfg.reward.rm.size, "d_rm": cfg.reward.rm.d_rm, "steps": cfg.reward.rm.steps,
                 "lr": cfg.reward.rm.lr, "init": cfg.reward.rm.init, "policy": cfg.model}.items():
        tracker.client.log_param(run.info.run_id, k, v)
    for k, v in metrics.items():
        tracker.client.log_metric(run.info.run_id, k, v)
    tracker.client.set_terminated(run.info.run_id)
    print(json.dumps({"model_id": key, "checkpoint": str(path), **metrics}, indent=1))
    return 0


def _up(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m serve.rm up", description="serve RMs locally")
    ap.add_argument("--ladder", default="tiny")
    ap.add_argument("--sizes", default=None, help="comma-separated sizes (default: all of the ladder)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--token", default=None)
    ap.add_argument("--cache-dir", default=".cache")
    ap.add_argument("--max-batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    import ray

    from core.config import load
    from serve.app import RMAppArgs, deploy
    cfg = load("demo", [f"ladder={args.ladder}", f"cache_dir={args.cache_dir}"])
    sizes = args.sizes.split(",") if args.sizes else list(cfg.ladder.sizes)
    bad = [s for s in sizes if s not in cfg.ladder.sizes]
    if bad:
        print(f"error: --sizes {bad[0]!r} is not a size of ladder {args.ladder!r}; allowed: "
              f"{', '.join(cfg.ladder.sizes)}", file=sys.stderr)
        return 2
    ray.init(include_dashboard=False, configure_logging=False)
    for size in sizes:
        root = checkpoint_root(cfg, size)
        root.mkdir(parents=True, exist_ok=True)
        res = cfg.ladder.sizes[size].resources
        url = deploy(RMAppArgs(size=size, checkpoint_root=str(root), token=args.token,
                               max_batch_size=args.max_batch_size, num_gpus=res.gpus),
                     host=args.host, port=args.port)
        print(f"rm {size}: POST {url}  (checkpoints under {root}; "
              f"header serve_multiplexed_model_id=<key from `python -m serve.rm train`>)", flush=True)
    print(f"endpoint up: reward.rm.url=http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve
        serve.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train", "up"):
        print(__doc__, file=sys.stderr)
        return 2
    from core.errors import UserError
    try:
        return {"train": _train, "up": _up}[argv[0]](argv[1:])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
