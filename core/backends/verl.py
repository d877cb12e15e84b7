"""The distributed backend: a trial runs verl 0.9.1's ``main_ppo`` (vLLM or SGLang rollouts)
with the same config, plugins, metric names and MLflow run as the local backend.

1. **Config translation** (``verl_overrides``): the trial's validated config becomes Hydra
   overrides of verl's own installed ``ppo_trainer`` config (``compose_verl`` composes them
   with the compose API, which is what the tests and ``--dry-run`` check). Only verl 0.9.1's
   ``reward.*`` keys are used (the legacy top-level reward keys are ignored by ``main_ppo``).
   Any further verl key passes through from ``verl.<key>=<value>`` overrides, last, so it wins.
2. **Data**: the RL prompts are written to ``<workdir>/data/train.parquet`` in verl's schema,
   in the order the curriculum plugin gives them (``data.shuffle=false`` keeps it), and the
   eval prompts to ``val.parquet``.
3. **Rewards** go through ``core/verl_reward.py`` (``reward.custom_reward_function``), which
   dispatches to our reward plugins; see that module for where the CPU-heavy verifiers run.
4. **Execution** (``run``): ``python -m verl.trainer.main_ppo <overrides>`` as a subprocess of
   the Tune trial, joining the same Ray cluster (``+ray_kwargs.ray_init.address=auto``). Tune
   books only a CPU for the trial and no GPUs: verl creates its own GPU placement groups,
   which a Tune placement group would capture and starve; the grid caps concurrency to the
   cluster's GPUs divided by a trial's (``max_concurrent``). verl logs to the trial's MLflow
   child run (``MLFLOW_RUN_ID`` in its environment). After each validation the trial parses
   ``validation_data_dir/<step>.jsonl`` into our unbiased pass@k per domain (verl's
   ``best@k`` is a bootstrap maximum, biased low, and is not reported as pass@k) and reports
   it to Tune with FLOPs from ``core/flops.py``. verl checkpoints to
   ``<workdir>/verl_checkpoints`` and resumes from there itself (``trainer.resume_mode=auto``).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Config, flatten_keys

BRIDGE = Path(__file__).resolve().parents[1] / "verl_reward.py"


def verl_config_dir() -> Path:
    import verl
    return Path(verl.__file__).resolve().parent / "trainer" / "config"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, str) and re.search(r"[=,\[\]{}()'\" :$\\]", v):   # Hydra's quoted string
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(v)


def reward_kwargs(cfg: Config, rm_model_id: str | None = None) -> dict[str, Any]:
    """What the bridge needs to rebuild this trial's reward (plugin name and settings)."""
    kw: dict[str, Any] = {"reward_name": cfg.reward.name, "format_weight": cfg.reward.format_weight}
    if cfg.reward.name == "learned_rm" or cfg.reward.rm.url:
        rm = cfg.reward.rm
        kw.update(rm_url=rm.url, rm_size=rm.size, rm_gold=rm.gold, rm_timeout_s=rm.timeout_s,
                  rm_retries=rm.retries)
        if rm.token:
            kw["rm_token"] = rm.token
        if rm_model_id:
            kw["rm_model_id"] = rm_model_id
    return kw


def verl_overrides(cfg: Config, workdir: Path, experiment: str = "agentic_rl_scaling",
                   trial: str = "trial", rm_model_id: str | None = None) -> list[str]:
    """Hydra overrides of verl's ``ppo_trainer`` for this trial (passthrough ``verl.*`` last)."""
    workdir = Path(workdir).resolve()
    rl, ev, res = cfg.rl, cfg.eval, cfg.size.resources
    ov = {
        "algorithm.adv_estimator": rl.adv_estimator,
        "algorithm.use_kl_in_reward": False,
        "data.train_files": str(workdir / "data" / "train.parquet"),
        "data.val_files": str(workdir / "data" / "val.parquet"),
        "data.train_batch_size": rl.prompts_per_step,
        "data.max_response_length": rl.max_new_tokens,
        "data.shuffle": False,                      # the parquet is in curriculum order
        "actor_rollout_ref.model.path": cfg.size.path,
        "actor_rollout_ref.actor.optim.lr": cfg.rl_lr,
        "actor_rollout_ref.actor.ppo_mini_batch_size": rl.prompts_per_step,
        "actor_rollout_ref.actor.clip_ratio": rl.clip_ratio,
        "actor_rollout_ref.actor.loss_agg_mode": rl.loss_agg_mode,
        "actor_rollout_ref.actor.grad_clip": rl.max_grad_norm,
        "actor_rollout_ref.actor.use_kl_loss": bool(rl.kl_coef),
        "actor_rollout_ref.rollout.name": rl.engine,
        "actor_rollout_ref.rollout.n": rl.group_size,
        "actor_rollout_ref.rollout.temperature": rl.temperature,
        "actor_rollout_ref.rollout.top_p": rl.top_p,
        "actor_rollout_ref.rollout.val_kwargs.n": ev.n_samples,
        "actor_rollout_ref.rollout.val_kwargs.temperature": ev.temperature,
        "actor_rollout_ref.rollout.val_kwargs.top_p": rl.top_p,
        "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
        "trainer.total_training_steps": rl.steps,
        "trainer.test_freq": ev.every,
        "trainer.save_freq": ev.every,
        "trainer.val_before_train": True,
        "trainer.validation_data_dir": str(workdir / "validation"),
        "trainer.default_local_dir": str(workdir / "verl_checkpoints"),
        "trainer.resume_mode": "auto",
        "trainer.logger": ["console", "mlflow"],
        "trainer.project_name": experiment,
        "trainer.experiment_name": trial,
        "trainer.n_gpus_per_node": res.gpus,
        "trainer.nnodes": res.nodes,
        "reward.custom_reward_function.path": str(BRIDGE),
        "reward.custom_reward_function.name": "compute_score",
        "reward.reward_manager.name": "naive",
    }
    if rl.kl_coef:
        ov.update({"actor_rollout_ref.actor.kl_loss_coef": rl.kl_coef,
                   "actor_rollout_ref.actor.kl_loss_type": "low_var_kl"})
    out = [f"{k}={_value(v)}" for k, v in ov.items()]
    out += [f"+reward.custom_reward_function.reward_kwargs.{k}={_value(v)}"
            for k, v in reward_kwargs(cfg, rm_model_id).items()]
    out += [f"++{k}={_value(v)}" for k, v in flatten_keys(cfg.verl).items()]   # add or replace
    return out


def compose_verl(overrides: list[str]):
    """verl's installed ``ppo_trainer`` config composed with ``overrides`` (CPU-safe)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(verl_config_dir()), version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def command(cfg: Config, workdir: Path, **kw) -> list[str]:
    """The exact command a trial runs (``--dry-run`` prints it)."""
    return [sys.executable, "-m", "verl.trainer.main_ppo", *verl_overrides(cfg, workdir, **kw),
            "+ray_kwargs.ray_init.address=auto"]


def dry_run(cfg: Config, trials: list[tuple[dict, Config]]) -> str:
    """Per trial, the verl command a grid would run (``python -m core.tune ... --dry-run``)."""
    from core.grid import run_dir, trial_key
    from core.tracking import experiment_name
    out = run_dir(cfg)
    lines = [f"# grid {cfg.grid.name}: {len(trials)} verl trial(s); run folder {out}",
             "# each trial first writes its data/train.parquet (curriculum order) and data/val.parquet,",
             "# then runs this with MLFLOW_TRACKING_URI and MLFLOW_RUN_ID (its MLflow child run) set"]
    if cfg.data.d_sft:
        lines.append(f"# note: data.d_sft={cfg.data.d_sft} is ignored: the SFT warm start is a local-backend "
                     "step; the ladder's checkpoints are already distilled")
    for i, (values, t) in enumerate(trials):
        key = trial_key(values)
        cmd = command(t, out / "trials" / key, experiment=experiment_name(cfg), trial=key)
        lines.append(f"\n# trial {i}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        head, rest = " ".join(shlex.quote(c) for c in cmd[:3]), [shlex.quote(c) for c in cmd[3:]]
        lines.append(" \\\n    ".join([head, *rest]))
    return "\n".join(lines)


# --- data ------------------------------------------------------------------------------------
def write_data(cfg: Config, workdir: Path, log=print) -> tuple[Path, Path]:
    """Train prompts in curriculum order (steps x prompts_per_step rows) and eval prompts, as
    parquet in verl's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core import data
    from core.plugins import registry
    folder = Path(workdir) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    train, val = data.select(cfg, "train"), data.select(cfg, "eval")
    curriculum = registry().get("curricula", cfg.curriculum.name).factory(train, seed=cfg.seed)
    ordered = [r for step in range(cfg.rl.steps) for r in curriculum.batch(step, cfg.rl.prompts_per_step)]

    def rows(records):
        return [{"data_source": r["data_source"], "prompt": r["prompt"], "ability": r["ability"],
                 "reward_model": {"style": r["reward_model"]["style"],
                                  "ground_truth": json.dumps(r["reward_model"]["ground_truth"])
                                  if not isinstance(r["reward_model"]["ground_truth"], str)
                                  else r["reward_model"]["ground_truth"]},
                 "extra_info": {"domain": r["extra_info"].get("domain") or r["ability"],
                                "prompt_text": r["prompt"][-1]["content"],    # a learned RM reads it
                                "difficulty": int(r["extra_info"].get("difficulty") or 0),
                                "index": i, "json": json.dumps(r["extra_info"], default=str)}}
                for i, r in enumerate(records)]
    paths = folder / "train.parquet", folder / "val.parquet"
    pq.write_table(pa.Table.from_pylist(rows(ordered)), paths[0])
    pq.write_table(pa.Table.from_pylist(rows(val)), paths[1])
    log(f"[verl] wrote {len(ordered)} train rows (curriculum order) and {len(val)} val prompts to {folder}")
    return paths


# --- validation dumps -> pass@k -------------------------------------------------------------------
def read_dump(path: Path) -> list[dict]:
    """The rows of verl's ``<step>.jsonl``, one per response."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def parse_validation_dump(path: Path, k_max: int, rows: list[dict] | None = None) -> dict[str, float]:
    """Unbiased pass@k per domain and overall from verl's ``<step>.jsonl`` (or its ``rows``,
    already read).

    Rows are one response each (``input``, ``output``, ``score`` and the bridge's extra
    fields ``acc`` and ``domain``); responses of one prompt share ``input``. A response is
    correct when ``acc`` (else ``score``) is >= 0.5."""
    from core.metrics import pass_at_k_metrics
    groups: dict[str, list[bool]] = defaultdict(list)
    domain_of: dict[str, str] = {}
    lengths = []
    for row in read_dump(path) if rows is None else rows:
        value = row.get("acc", row.get("score"))
        groups[row["input"]].append(float(value) >= 0.5)
        domain_of[row["input"]] = str(row.get("domain") or row.get("data_source") or "all").split("__")[0]
        lengths.append(len(str(row.get("output", ""))))
    if not groups:
        raise ValueError(f"{path}: no rows")
    sizes = {len(v) for v in groups.values()}
    if len(sizes) != 1:
        raise ValueError(f"{path}: prompts have different sample counts {sorted(sizes)}; "
                         "pass@k needs the same n per prompt")
    prompts = list(groups)
    correct = np.array([groups[p] for p in prompts])
    metrics = pass_at_k_metrics(correct, [domain_of[p] for p in prompts], min(k_max, correct.shape[1]))
    metrics["val/response_chars"] = float(np.mean(lengths))
    return metrics


def train_flops(cfg: Config, flop_model, tracking_uri: str | None, run_id: str | None,
                upto: int) -> dict[str, float]:
    """Rollout, reference and update FLOPs up to step ``upto`` from the token counts verl logs
    (``perf/total_num_tokens`` per step, read back from the trial's MLflow run)."""
    if not (tracking_uri and run_id):
        return {}
    from mlflow.tracking import MlflowClient
    hist = MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, "perf/total_num_tokens")
    per_step = {m.step: m.value for m in hist if m.step <= upto}
    if not per_step:
        return {}
    seqs = cfg.rl.prompts_per_step * cfg.rl.group_size
    fwd = upd = 0.0
    for tokens in per_step.values():
        lens = [max(1, int(tokens / seqs))] * seqs       # verl logs totals; spread evenly
        fwd += flop_model.forward(lens)
        upd += flop_model.train(lens)
    out = {"compute/flops_rollout": fwd, "compute/flops_recompute": fwd, "compute/flops_update": upd,
           "compute/flops_reference": fwd if cfg.rl.kl_coef else 0.0}
    out["compute/flops_total"] = sum(out.values())
    return out


# --- execution -------------------------------------------------------------------------------------
def run(cfg: Config, workdir: Path, resume: Path | None = None, log=print,
        mlflow_run_id: str | None = None, tracking_uri: str | None = None
        ) -> Iterator[tuple[dict[str, float], Path | None]]:
    """Run verl for this trial; yield our metrics after every validation verl dumps."""
    from core.flops import FlopModel
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "data" / "train.parquet").exists():
        write_data(cfg, workdir, log)
    done = set(json.loads((workdir / "reported.json").read_text())) if (workdir / "reported.json").exists() else set()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if mlflow_run_id:
        env["MLFLOW_RUN_ID"] = mlflow_run_id
    cmd = command(cfg, workdir)
    log(f"[verl] {shlex.join(cmd)}")
    from transformers import AutoConfig, AutoTokenizer
    flop_model = FlopModel.from_config(AutoConfig.from_pretrained(cfg.size.path))
    tok = AutoTokenizer.from_pretrained(cfg.size.path)
    with open(workdir / "verl.log", "ab") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        eval_flops = 0.0
        while True:
            finished = proc.poll() is not None
            for dump in sorted((workdir / "validation").glob("*.jsonl"), key=lambda p: int(p.stem)):
                step = int(dump.stem)
                if step in done or (not finished and time.time() - dump.stat().st_mtime < 5):
                    continue   # written in the background: wait until it is still for 5 s
                rows = read_dump(dump)
                metrics = parse_validation_dump(dump, cfg.eval.k_max, rows)
                eval_flops += flop_model.forward([len(tok(r["input"] + r["output"])["input_ids"]) for r in rows])
                metrics.update({"step": step, "compute/flops_eval": eval_flops,
                                **train_flops(cfg, flop_model, tracking_uri, mlflow_run_id, step)})
                done.add(step)
                (workdir / "reported.json").write_text(json.dumps(sorted(done)))
                yield metrics, workdir / "verl_checkpoints"
            if finished:
                break
            time.sleep(5)
    if proc.returncode != 0:
        tail = (workdir / "verl.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"verl main_ppo exited with {proc.returncode}; end of {workdir / 'verl.log'}:\n{tail}")
