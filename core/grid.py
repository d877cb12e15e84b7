"""Grid driver (in-process, sequential): runs every trial of a grid with progress output.

Each trial writes ``runs/<grid>/<stamp>/trial_<i>/metrics.jsonl`` (one line per RL step) and
its checkpoints; ``resume=true`` continues the newest run of the grid from each trial's last
checkpoint, losing no finished step. At the end it prints pass@1 before and after RL per model
size, averaged over seeds, with a 90% bootstrap interval over eval prompts and seeds.

(The Ray Tune driver with MLflow runs and the scaling-law report replaces this loop in the
scaling-grids issue; trials already go through ``core.trial.run_trial``, which it will reuse.)
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from core.config import Config
from core.metrics import paired_gain_ci
from core.trial import run_trial


def run_dir(cfg: Config) -> Path:
    root = Path(cfg.output_dir).resolve() / cfg.grid.name
    if cfg.resume:
        previous = sorted(p for p in root.glob("*") if p.is_dir())
        if previous:
            return previous[-1]
        print(f"resume=true but no earlier run under {root}; starting a new one")
    return root / time.strftime("%Y%m%d-%H%M%S")


def _read_steps(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_grid(cfg: Config, trials: list[tuple[dict, Config]]) -> int:
    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    print(f"grid {cfg.grid.name}: {len(trials)} trial(s), writing to {out}", flush=True)
    t0, results = time.time(), []
    for i, (values, trial) in enumerate(trials):
        label = ", ".join(f"{k}={v}" for k, v in values.items()) or "single trial"
        workdir = out / f"trial_{i:03d}"
        metrics_path = workdir / "metrics.jsonl"
        done = {m["step"] for m in _read_steps(metrics_path)}
        print(f"\n== trial {i + 1}/{len(trials)}: {label}", flush=True)
        workdir.mkdir(parents=True, exist_ok=True)
        with metrics_path.open("a") as f:
            for metrics, _ckpt in run_trial(trial, workdir, resume=True):
                if metrics["step"] not in done:
                    f.write(json.dumps(metrics) + "\n")
                    f.flush()
        results.append((values, trial, workdir))
        elapsed = time.time() - t0
        eta = elapsed / (i + 1) * (len(trials) - i - 1)
        print(f"== trial {i + 1}/{len(trials)} done; elapsed {elapsed:.0f}s, ETA {eta:.0f}s",
              flush=True)
    print("\n" + summarize(results))
    print(f"\nper-step metrics: {out}/trial_*/metrics.jsonl")
    return 0


def _per_prompt(workdir: Path, which: str) -> np.ndarray | None:
    ckpts = sorted((workdir / "checkpoints").glob("step_*"))
    if not ckpts:
        return None
    ckpt = ckpts[0] if which == "first" else ckpts[-1]
    return np.array(json.loads((ckpt / "eval.json").read_text())["pass_at_1"])


def summarize(results: list[tuple[dict, Config, Path]]) -> str:
    """pass@1 before/after RL per model size, seeds pooled, with 90% bootstrap intervals."""
    by_size: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    params = {}
    for _, trial, workdir in results:
        before, after = _per_prompt(workdir, "first"), _per_prompt(workdir, "last")
        if before is not None:
            by_size[trial.model].append((before, after))
            params[trial.model] = trial.size.params
    lines = [f"{'size':<6} {'params':>11} {'seeds':>5} {'pass@1 before':>14} {'after':>7} "
             f"{'gain [90% CI]':>24}"]
    for size, pairs in by_size.items():
        before, after = np.stack([b for b, _ in pairs]), np.stack([a for _, a in pairs])
        gain, lo, hi = paired_gain_ci(before, after, level=0.9, seed=0)
        lines.append(f"{size:<6} {params[size] or 0:>11,} {len(pairs):>5} {before.mean():>14.3f} "
                     f"{after.mean():>7.3f} {gain:>+8.3f} [{lo:+.3f}, {hi:+.3f}]")
    return "\n".join(lines)
