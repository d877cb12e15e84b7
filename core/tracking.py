"""MLflow layout: one parent run per grid invocation, one child run per trial.

The driver (not the trials) writes to MLflow, through a Ray Tune callback, so that a SQLite
store has a single writer. A child run carries every resolved config value as a param, the
grid name, axis values, ladder size, parameter count, git commit and dataset fingerprint as
tags, every per-step metric at its RL step, and the trial's checkpoint folder. A resumed grid
finds its parent and children again by tag, so no step is logged to a second run.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from core import schema
from core.config import CONFIG_DIR, Config

PROJECT_ROOT = CONFIG_DIR.parent
METRIC_PREFIXES = ("val/", "train/", "compute/", "reward/", "rm/", "verl/", "trial/")
STEP_METRIC = "trial/step"   # logged with every step: the last step a run holds, for exactly-once


def tracking_uri(cfg: Config) -> str:
    """Config, then ``$MLFLOW_TRACKING_URI``, then ``sqlite:///<project>/mlflow.db``."""
    return (cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")


def artifact_root(uri: str) -> Path:
    """Artifacts beside a SQLite store (absolute: trials run in other folders)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts"
    return PROJECT_ROOT / "mlartifacts"


def experiment_name(cfg: Config) -> str:
    return cfg.tracking.experiment or f"grid/{cfg.grid.name}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True,
                              capture_output=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dataset_fingerprint(cfg: Config) -> str:
    """A hash of the exact records selected (RL pool and eval prompts), not of the config."""
    from core.data import selection_fingerprint
    return selection_fingerprint(cfg)


def flat_params(cfg: Config) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = json.dumps(node) if isinstance(node, (list, dict)) else str(node)

    d = schema.to_dict(cfg)
    d["ladder"] = {"name": cfg.ladder.name, "size": schema.to_dict(cfg.size)}  # this trial's rung
    walk("", d)
    return out


def trial_tags(cfg: Config, values: dict, parent_id: str, trial_id: str) -> dict[str, str]:
    tags = {"mlflow.parentRunId": parent_id, "trial_id": trial_id, "grid": cfg.grid.name,
            "ladder": cfg.ladder.name, "model_size": cfg.model,
            "params_count": str(cfg.size.params or ""), "git_commit": git_commit(),
            "dataset_fingerprint": dataset_fingerprint(cfg), "backend": cfg.backend,
            "mlflow.runName": ", ".join(f"{k}={v}" for k, v in values.items()) or trial_id}
    tags.update({f"axis.{k}": str(v) for k, v in values.items()})
    if cfg.reward.name == "learned_rm":
        tags["rm_params"] = str(cfg.ladder.sizes[cfg.reward.rm.size].params or "")
    return tags


class Tracker:
    """Thin wrapper over ``MlflowClient`` with the platform's run layout."""

    def __init__(self, uri: str, experiment: str) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            experiment, artifact_location=artifact_root(uri).as_uri(),
            # open on "Training runs" (the run tree and charts), not MLflow 3's GenAI view
            tags={"mlflow.experimentKind": "custom_model_development"})

    def parent(self, cfg: Config, run_dir: Path, existing: str | None = None) -> str:
        if existing:                       # a resumed grid: its parent runs again
            self.client.update_run(existing, status="RUNNING")
            return existing
        run = self.client.create_run(self.experiment_id, tags={
            "grid": cfg.grid.name, "run_dir": str(run_dir), "git_commit": git_commit(),
            "mlflow.runName": f"{cfg.grid.name} {time.strftime('%Y-%m-%d %H:%M')}",
            "axes": json.dumps(cfg.grid.axes)})
        return run.info.run_id

    def child(self, cfg: Config, values: dict, parent_id: str, trial_id: str) -> str:
        """The child run of ``trial_id`` under ``parent_id``, created on first use."""
        found = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}' "
                                                f"and tags.trial_id = '{trial_id}'")
        if found:
            return found[0].info.run_id
        from mlflow.entities import Param
        run = self.client.create_run(self.experiment_id,
                                     tags=trial_tags(cfg, values, parent_id, trial_id))
        params = [Param(k, v[:6000]) for k, v in flat_params(cfg).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[i:i + 100])
        return run.info.run_id

    def log_step(self, run_id: str, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric
        step, now = int(metrics["step"]), int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if k.startswith(METRIC_PREFIXES) and isinstance(v, (int, float))
                 and not isinstance(v, bool)]
        batch.append(Metric(STEP_METRIC, float(step), now, step))
        for i in range(0, len(batch), 1000):      # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(run_id, metrics=batch[i:i + 1000])

    def last_step(self, run_id: str) -> int:
        """The last step logged to ``run_id`` (-1 if none): steps up to it are never logged again."""
        return max((int(m.step) for m in self.client.get_metric_history(run_id, STEP_METRIC)), default=-1)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)
