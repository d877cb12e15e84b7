"""Reward models for a trial: build D_RM, train (cached), serve.

    python -m serve.rm train grid=rm_scaling reward.rm.size=s reward.rm.d_rm=500
        train (or find) the RM this config asks for; logs a run to MLflow; prints its id
    python -m serve.rm up --ladder tiny [--sizes xs,s] [--port 8000] [--token T]
        start a local Ray + Serve with one app per RM size class; prints the URLs

``ensure_rm(cfg)`` is what a trial calls: the RM lives in
``<cache_dir>/rm/<size>/<key>`` (a Hugging Face checkpoint), where the key hashes the RM size,
D_RM, its training settings, the policy base whose samples make the pairs, the data and the
seed; a file lock makes concurrent trials wait instead of training twice. The Serve app of
that size class has ``checkpoint_root=<cache_dir>/rm/<size>`` and loads the key on demand
(multiplexed), so every trial of a grid shares one endpoint per size class.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from core import schema
from core.config import Config, with_values

PAIR_SAMPLES = 16   # samples per prompt when looking for a right and a wrong response


def checkpoint_root(cfg: Config, size: str | None = None) -> Path:
    return Path(cfg.cache_dir).resolve() / "rm" / (size or cfg.reward.rm.size)


def rm_key(cfg: Config) -> str:
    from core.backends.sft import base_key
    rm = schema.to_dict(cfg.reward.rm)
    for serving_only in ("url", "port", "token", "max_batch_size", "timeout_s", "retries"):
        rm.pop(serving_only)
    ident = {"rm": rm, "rm_arch": schema.to_dict(cfg.ladder.sizes[cfg.reward.rm.size]),
             "policy_base": base_key(cfg) if cfg.data.d_sft else schema.to_dict(cfg.size),
             "policy": cfg.model, "data": schema.to_dict(cfg.data), "v": 1}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _for_size(cfg: Config, size: str) -> Config:
    return schema.build(Config, with_values(schema.to_dict(cfg), {"model": size}))


def build_pairs(cfg: Config, policy_source: str, log=print) -> tuple[list[dict], list[dict]]:
    """(train, held-out) pairs from the policy base's samples (``PAIR_SAMPLES`` per prompt, up
    to 10 x the pairs asked for in prompts), labelled by the gold verifier."""
    import torch

    from core import data, models
    from core.backends import rollout as ro
    from core.backends.local import score
    from core.plugins import registry
    from core.errors import ConfigError
    from plugins.datasets.preference import PreferenceDataError, policy_pairs
    rm = cfg.reward.rm
    model, tok = models.load(policy_source)
    model.eval()
    gold = registry().get("rewards", rm.gold).factory(format_weight=0.0)

    def sample_fn(batch, n):
        with torch.no_grad():
            return ro.sample(model, tok, ro.render(tok, batch), n,
                             cfg.rl.max_new_tokens, cfg.rl.temperature, cfg.rl.top_p).texts

    def correct_fn(batch, texts, n):
        return score(gold, batch, texts, n)[1].tolist()

    out = []
    for role, n in (("rm_train", rm.d_rm), ("rm_eval", rm.n_eval_pairs)):
        prompts = data.select(cfg, role, n=10 * n)
        t = time.time()
        try:
            out.append(policy_pairs(prompts, sample_fn, correct_fn, n, PAIR_SAMPLES, seed=cfg.data.seed))
        except PreferenceDataError as exc:
            key = "reward.rm.d_rm" if role == "rm_train" else "reward.rm.n_eval_pairs"
            raise ConfigError(key, n, str(exc)) from exc
        log(f"[rm] {n} {role.split('_')[1]} pairs from {cfg.model}'s samples ({time.time() - t:.0f}s)")
    return out[0], out[1]


def ensure_rm(cfg: Config, log=print) -> tuple[str, Path, dict]:
    """(key, checkpoint folder, held-out metrics) of the RM ``cfg`` asks for; trains it once."""
    from core import models
    from core.backends.sft import warm_start
    from plugins.datasets.preference import fingerprint
    from serve.rm_model import init_rm, train_rm
    rm = cfg.reward.rm
    root = checkpoint_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    key = rm_key(cfg)
    out = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "rm.json").exists():
            log(f"[rm {rm.size}] reusing cached reward model {key}")
        else:
            policy_source, _ = warm_start(cfg, log)
            train_pairs, eval_pairs = build_pairs(cfg, policy_source, log)
            rm_cfg = _for_size(cfg, rm.size)
            backbone = warm_start(rm_cfg, log)[0] if rm.init == "base" else models.model_source(
                rm_cfg.size, Path(cfg.cache_dir).resolve(), seed=cfg.data.seed)
            init = init_rm(backbone, root / f"{key}.init", seed=cfg.data.seed)
            metrics = train_rm(str(init), out, train_pairs, eval_pairs, rm.steps, rm.batch_size,
                               rm.lr, seed=cfg.data.seed, log=log)
            shutil.rmtree(init, ignore_errors=True)
            info = {**metrics, "pairs_fingerprint": fingerprint(train_pairs),
                    "eval_pairs_fingerprint": fingerprint(eval_pairs), "size": rm.size,
                    "d_rm": rm.d_rm, "backbone": str(backbone), "policy_base": str(policy_source)}
            (out / "rm.json").write_text(json.dumps(info, indent=1))
    info = json.loads((out / "rm.json").read_text())
    return key, out, {k: v for k, v in info.items() if k.startswith("rm/")}


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
