"""What the report reads: a grid's runs, and the grid's axes as the report sees them.

A *run* (one trial) is a plain dict, as ``load_runs`` returns it and as tests build it::

    {"id": str, "name": str, "status": "FINISHED",
     "tags":    {"axis.model": "m", "model_size": "m", "params_count": "4500000", ...},
     "params":  {"seed": "0", "rl.algorithm": "grpo", "grid.report": '["scaling"]', ...},
     "metrics": {"val/pass_at_1": {0: 0.31, 10: 0.42, ...}, ...},   # key -> {step: value}
     "evals":   {0: [per-prompt pass@1, ...], 40: [...]},           # step -> list
     "eval_domains": ["arith", "sort", ...]}     # each eval prompt's domain (None: not logged)

``evals`` come from the child run's ``evals/step_<n>.json`` artifacts (the driver logs them
from each evaluation's per-prompt pass@1), so a report needs nothing but the MLflow store.
The parent is ``{"id": str, "tags": {...}}``; its ``axes`` tag is the JSON of the grid's axes.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# axes that do not move a curve along the grid's axis: seeds pool into one curve, and the
# algorithm axis pairs an RL trial with its matched SFT control
POOLED = ("seed", "rl.algorithm")
# how the report names an axis: (axis label, symbol in sentences, run tag holding a number)
AXIS_NAMES = {
    "model": ("policy parameters N", "N", "params_count"),
    "reward.rm.size": ("reward-model parameters", "RM size", "rm_params"),
    "data.d_rl": ("RL prompts D_RL", "D_RL", None),
    "data.d_sft": ("SFT examples D_SFT", "D_SFT", None),
    "reward.rm.d_rm": ("preference pairs D_RM", "D_RM", None),
    "curriculum.name": ("curriculum", "curriculum", None),
    "rl.lr": ("RL learning rate", "lr", None),
}
DEFAULT_SECTIONS = ("findings", "scaling", "rm")
# the metric histories the sections read (one MLflow query per run and key: the others stay
# in MLflow; a new section that reads another key adds it here)
KEYS = ("val/", "compute/flops_total", "train/kl_init", "train/gold_reward_mean",
        "train/proxy_reward_mean", "train/acc_mean", "rm/", "compute/flops_rollout", "train/filtered_groups",
        "train/extra_prompts", "train/served_prompts")


# ------------------------------------------------------------------ reading MLflow

def load_runs(uri: str, parent_id: str, log: Callable[[str], None] = lambda _: None,
              keys: tuple[str, ...] = KEYS) -> tuple[dict, list[dict]]:
    """The parent run and its children (histories of the metrics that start with one of
    ``keys``, and per-prompt evals) from MLflow."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], max_results=10000,
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    log(f"{len(children)} child run(s) under parent {parent_id}")
    runs = []
    for child in sorted(children, key=lambda c: c.info.start_time or 0):
        rid = child.info.run_id
        hist = {key: {int(m.step): float(m.value) for m in client.get_metric_history(rid, key)}
                for key in child.data.metrics if key.startswith(keys)}
        evals, domains = _evals(client, rid)
        runs.append({"id": rid, "name": child.data.tags.get("mlflow.runName", rid),
                     "status": child.info.status, "tags": dict(child.data.tags),
                     "params": dict(child.data.params), "metrics": hist,
                     "evals": evals, "eval_domains": domains})
    return {"id": parent_id, "tags": dict(parent.data.tags)}, runs


def _evals(client, run_id: str) -> tuple[dict[int, list[float]], list[str] | None]:
    """Per-prompt pass@1 per eval step from ``evals/step_<n>.json`` artifacts (none: {}), and
    each prompt's domain where the trial logged it (None otherwise)."""
    import os
    import tempfile
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        if not client.list_artifacts(run_id, "evals"):
            return {}, None
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(client.download_artifacts(run_id, "evals", tmp))
            data = [json.loads(p.read_text()) for p in sorted(folder.glob("step_*.json"))]
    except Exception as exc:   # noqa: BLE001 - unreadable artifacts: the gains say n/a
        print(f"[report] run {run_id}: per-prompt evals unreadable ({exc})", file=sys.stderr)
        return {}, None
    domains = next((list(map(str, d["domains"])) for d in data if d.get("domains")), None)
    return {int(d["step"]): [float(v) for v in d["pass_at_1"]] for d in data}, domains


# ------------------------------------------------------------------ one run

def axis_value(run: dict, key: str) -> str | None:
    """The run's value on an axis: its ``axis.<key>`` tag, else the param of that key."""
    v = run["tags"].get(f"axis.{key}")
    return v if v is not None else run["params"].get(key)


def algorithm(run: dict) -> str:
    """``grpo`` (RL) or ``sft`` (the matched control); runs from before the key are RL."""
    return axis_value(run, "rl.algorithm") or "grpo"


def seed(run: dict) -> str:
    return axis_value(run, "seed") or "0"


def has_evals(run: dict) -> bool:
    return bool(run["metrics"].get("val/pass_at_1"))


def is_rm_run(run: dict) -> bool:
    return all(k in run["metrics"] for k in ("train/kl_init", "train/gold_reward_mean",
                                            "train/proxy_reward_mean"))


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ------------------------------------------------------------------ the grid

@dataclass(frozen=True)
class GridView:
    """The grid as the report sees it: its axes (in the grid's order), the sections it asks
    for, and (for sections that build on others) the results of the sections before."""
    name: str
    parent_id: str
    tags: Mapping[str, str]
    axes: tuple[str, ...]
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    results: Mapping[str, Any] = field(default_factory=dict)
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # declared order

    @property
    def axis(self) -> str:
        """The x axis of the grid's plots: its first axis other than seed and algorithm, else
        the policy size (every trial has one)."""
        return next((a for a in self.axes if a not in POOLED), "model")

    @property
    def series_axes(self) -> tuple[str, ...]:
        """Further axes: one line per value in the plots against the grid's axis."""
        return tuple(a for a in self.axes if a not in POOLED and a != self.axis)

    @property
    def x_label(self) -> str:
        return AXIS_NAMES.get(self.axis, (self.axis,))[0]

    @property
    def x_symbol(self) -> str:
        return AXIS_NAMES[self.axis][1] if self.axis in AXIS_NAMES else self.axis

    @property
    def slug(self) -> str:
        """The axis in file names: ``n`` for model size, ``d_rl`` for data.d_rl."""
        sym = "n" if self.axis == "model" else self.axis.rsplit(".", 1)[-1]
        return "".join(c if c.isalnum() or c in "_-" else "_" for c in sym.lower())

    def x_of(self, run: dict) -> float | str | None:
        """The run's position on the grid's axis: a number (parameters for model sizes)
        where there is one, else the axis value as text."""
        tag = AXIS_NAMES.get(self.axis, (None, None, None))[2]
        value = axis_value(run, self.axis)
        num = _number(run["tags"].get(tag)) if tag else _number(value)
        return num if num is not None else value

    def series_of(self, run: dict) -> str:
        return ", ".join(f"{a}={axis_value(run, a)}" for a in self.series_axes)

    def group_of(self, run: dict) -> str:
        """Trials that differ only in their seed form one group (one curve, a seed band):
        ``model=m``, ``data.d_sft=4000, data.d_rl=256``, ``model=m, rl.algorithm=sft``."""
        keys = [a for a in self.axes if a != "seed"]
        tagged = [a for a in keys if f"axis.{a}" in run["tags"]]
        if tagged:          # a grid.include point names itself by its own keys only
            keys = tagged
        if "rl.algorithm" not in keys and algorithm(run) != "grpo":
            keys.append("rl.algorithm")
        name = ", ".join(f"{a}={axis_value(run, a)}" for a in keys)
        return name or f"model={run['tags'].get('model_size', '?')}"

    def numeric(self, runs: list[dict]) -> bool:
        """Whether the axis is a number for every run (then laws can be fitted along it)."""
        return all(isinstance(self.x_of(r), float) for r in runs)


def grid_view(parent: dict, runs: list[dict]) -> GridView:
    """The grid's axes from the parent's ``axes`` tag (the grid's order), else from the
    children's ``axis.*`` tags; its sections from the children's ``grid.report`` param, else
    the default ones that apply to these runs."""
    tags = parent.get("tags", {})
    declared = json.loads(tags.get("axes") or "{}")
    axes: list[str] = list(declared)
    for r in runs:      # an Optuna search has no axes but samples values per trial
        axes += [k[5:] for k in sorted(r["tags"]) if k.startswith("axis.") and k[5:] not in axes]
    sections = next((tuple(json.loads(r["params"]["grid.report"])) for r in runs
                     if r["params"].get("grid.report", "").startswith("[")), None)
    if sections is None:
        sections = tuple(s for s in DEFAULT_SECTIONS
                         if s != "rm" or any(is_rm_run(r) for r in runs))
    values = {k: tuple(str(x) for x in v) for k, v in declared.items() if isinstance(v, list)}
    return GridView(name=tags.get("grid", "?"), parent_id=parent.get("id", "?"), tags=tags,
                    axes=tuple(axes), sections=sections, values=values)


def group_runs(runs: list[dict], grid: GridView) -> dict[str, list[dict]]:
    """Runs by group, ordered along the grid's axis (numbers before text; text in the order
    the grid declares its values), then by name."""
    declared = grid.values.get(grid.axis, ())

    def order(r):
        x = grid.x_of(r)
        rank = declared.index(str(x)) if str(x) in declared else len(declared)
        return (isinstance(x, str), x if isinstance(x, float) else float(rank), str(x),
                grid.group_of(r), seed(r))
    groups: dict[str, list[dict]] = {}
    for r in sorted(runs, key=order):
        groups.setdefault(grid.group_of(r), []).append(r)
    return groups


def matrix(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps logged by any run, values[run, step]) with nan where a run lacks a step."""
    steps = sorted(set().union(*(r["metrics"].get(key, {}) for r in runs)))
    vals = np.array([[r["metrics"].get(key, {}).get(s, np.nan) for s in steps] for r in runs],
                    float).reshape(len(runs), len(steps))
    return np.array(steps, float), vals


def ks_logged(runs: list[dict]) -> list[int]:
    """The k of every ``val/pass_at_<k>`` the runs logged, ascending."""
    ks = {int(k.rsplit("_", 1)[1]) for r in runs for k in r["metrics"]
          if k.startswith("val/pass_at_") and k.rsplit("_", 1)[1].isdigit()}
    return sorted(ks)
