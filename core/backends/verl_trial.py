"""One verl trial: data in verl's schema, ``main_ppo`` as a subprocess, metrics read back.

1. **Data**: the RL prompts go to ``<workdir>/data/train.parquet`` in verl's schema, in the order
   the curriculum plugin serves them (``data.shuffle=false`` keeps it), the eval prompts to
   ``val.parquet``.
2. **Launch**: ``python -m verl.trainer.main_ppo <overrides>`` (``verl.command``) joins the grid's
   Ray cluster. It dies with the trial (``PR_SET_PDEATHSIG``), and verl resumes from its own
   checkpoints (``trainer.resume_mode=auto``) when the trial is restarted.
3. **Metrics**: verl's ``file`` logger writes one JSON line per step (``VERL_FILE_LOGGER_PATH``,
   one file per launch so a restart truncates nothing). Each step is reported once: verl's own
   metrics under ``verl/<name>`` (``@`` written ``_at_``), the platform's names mapped from
   them (``train/reward_mean`` = verl's ``critic/score/mean``, ...), and at each validation our
   unbiased pass@k per domain parsed from ``validation/<step>.jsonl`` (verl's ``best@k`` is a
   bootstrap maximum, biased low, and is not reported as pass@k). Reported steps and the FLOPs
   ledger persist in ``verl_state.json``, so a restarted trial repeats no step.
4. **FLOPs** (``core/flops.py``): per step from verl's token count (``perf/total_num_tokens``
   over prompts x G sequences): rollout and the old-policy recompute (verl recomputes it) as
   forwards, the reference forward with a KL term, the update as forward + backward; eval from
   the validation dump's texts.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.backends.verl import command, environment, model_path
from core.backends.verl_sft import ensure_sft_base
from core.config import Config

# verl metric -> the platform's name (the same names as the local backend)
PLATFORM_NAMES = {"critic/score/mean": "train/reward_mean", "actor/entropy": "train/entropy",
                  "actor/kl_loss": "train/kl", "response_length/mean": "train/response_length",
                  "actor/pg_loss": "train/pg_loss", "actor/grad_norm": "train/grad_norm",
                  "actor/pg_clipfrac": "train/pg_clipfrac",
                  # an online curriculum through verl's sampler (core/backends/verl_sampler.py)
                  **{f"curriculum/{k}": f"train/{k}" for k in
                     ("rounds", "served_prompts", "filtered_groups", "topped_up", "surplus_groups",
                      "extra_prompts")}}
POLL_S = 2.0


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
    train, val = _fits(cfg, data.select(cfg, "train"), log), _fits(cfg, data.select(cfg, "eval"), log)
    spec = registry().get("curricula", cfg.curriculum.name)
    if spec.is_online(cfg.curriculum.options):     # verl's sampler serves from the pool itself
        ordered = train
    else:                                          # a fixed schedule: the parquet's order
        curriculum = spec.factory(train, seed=cfg.seed, **cfg.curriculum.options)
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
    log(f"[verl] wrote {len(ordered)} train rows ({'the pool' if ordered is train else 'curriculum order'}) "
        f"and {len(val)} val prompts to {folder}")
    return paths


def _fits(cfg: Config, records: list[dict], log) -> list[dict]:
    """The records whose rendered prompt fits ``rl.max_prompt_tokens`` (verl fails on a longer
    one; its own filter would drop rows from the step-ordered parquet)."""
    from transformers import AutoTokenizer

    from core.models import render_prompt
    tok = AutoTokenizer.from_pretrained(model_path(cfg))
    keep = [r for r in records
            if len(tok(render_prompt(tok, r["prompt"]), add_special_tokens=False)["input_ids"])
            <= cfg.rl.max_prompt_tokens]
    if len(keep) < len(records):
        log(f"[verl] dropped {len(records) - len(keep)} of {len(records)} prompts longer than "
            f"rl.max_prompt_tokens={cfg.rl.max_prompt_tokens} tokens")
    if not keep:
        from core.errors import ConfigError
        raise ConfigError("rl.max_prompt_tokens", cfg.rl.max_prompt_tokens,
                          "no prompt of the selection fits; raise it")
    return keep


# --- validation dumps -> pass@k -------------------------------------------------------------------
def read_dump(path: Path) -> list[dict]:
    """The rows of verl's ``<step>.jsonl``, one per response (a partly written last line is
    left for the next read)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


def parse_validation_dump(path: Path, k_max: int, rows: list[dict] | None = None) -> dict[str, float]:
    """Unbiased pass@k per domain and overall from verl's ``<step>.jsonl`` (or its ``rows``).

    Rows are one response each (``input``, ``output``, ``score`` and the bridge's extra fields
    ``acc``, ``domain`` and ``prompt_index``); responses of one prompt share ``prompt_index``
    (else ``input``). A response is correct when ``acc`` (else ``score``) is >= 0.5."""
    from core.metrics import pass_at_k_metrics
    groups: dict[str, list[bool]] = defaultdict(list)
    domain_of: dict[str, str] = {}
    level_of: dict[str, int] = {}
    lengths = []
    for row in read_dump(path) if rows is None else rows:
        value = row.get("acc", row.get("score"))
        key = row["prompt_index"] if row.get("prompt_index", -1) >= 0 else row["input"]
        groups[key].append(float(value) >= 0.5)
        domain_of[key] = str(row.get("domain") or row.get("data_source") or "all").split("__")[0]
        level_of[key] = int(row.get("difficulty") or 0)
        lengths.append(len(str(row.get("output", ""))))
    if not groups:
        raise ValueError(f"{path}: no rows")
    sizes = {len(v) for v in groups.values()}
    if len(sizes) != 1:
        raise ValueError(f"{path}: prompts have different sample counts {sorted(sizes)}; "
                         "pass@k needs the same n per prompt")
    prompts = sorted(groups, key=lambda p: (isinstance(p, str), p))   # in the val parquet's order
    correct = np.array([groups[p] for p in prompts])
    metrics = pass_at_k_metrics(correct, [domain_of[p] for p in prompts], min(k_max, correct.shape[1]),
                                levels=[level_of[p] for p in prompts])
    metrics["val/response_chars"] = float(np.mean(lengths))
    metrics["eval/per_prompt_pass_at_1"] = correct.mean(axis=1).tolist()   # gains with intervals
    metrics["eval/per_prompt_domain"] = [domain_of[p] for p in prompts]    # per-domain gains
    return metrics


# --- verl's file logger ------------------------------------------------------------------------------
class MetricsFile:
    """Reads verl's ``file`` logger incrementally: ``{"step": s, "data": {...}}`` per line."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = Path(path), 0

    def new_records(self) -> list[tuple[int, dict]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        out = []
        while b"\n" in chunk:
            line, chunk = chunk.split(b"\n", 1)
            self.offset += len(line) + 1
            if line.strip():
                rec = json.loads(line)
                out.append((int(rec["step"]), rec["data"]))
        return out


def verl_metrics(data: dict) -> dict[str, float]:
    """verl's numeric metrics under ``verl/`` and the platform's names mapped from them."""
    out = {}
    for k, v in data.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            out["verl/" + k.replace("@", "_at_")] = float(v)
            if k in PLATFORM_NAMES:
                out[PLATFORM_NAMES[k]] = float(v)
    return out


class State:
    """What a trial counted and reported, persisted in ``verl_state.json``.

    ``counted``: steps whose FLOPs are in the ledger (saved before a step is handed on, so a
    step verl does not run again after a restart keeps its FLOPs); ``reported``: steps handed
    on (saved after, so a crash in between makes the step come again rather than vanish)."""

    def __init__(self, workdir: Path) -> None:
        from core.flops import FlopLedger
        self.file = Path(workdir) / "verl_state.json"
        raw = json.loads(self.file.read_text()) if self.file.exists() else {}
        self.reported: set[int] = set(raw.get("reported", []))
        self.counted: set[int] = set(raw.get("counted", []))
        self.ledger = FlopLedger.from_state(raw.get("flops", {}))
        self.launches = int(raw.get("launches", 0))

    def save(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"reported": sorted(self.reported), "counted": sorted(self.counted),
                                   "flops": self.ledger.state(), "launches": self.launches}))
        tmp.replace(self.file)


def _is_eval_step(cfg: Config, step: int) -> bool:
    return step == 0 or step % cfg.eval.every == 0 or step == cfg.rl.steps


def _step_flops(cfg: Config, data: dict, flop_model, state: State, rm_flop_model=None) -> None:
    tokens = data.get("perf/total_num_tokens")
    if not tokens:
        return
    seqs = cfg.rl.prompts_per_step * cfg.rl.group_size
    lens = [max(1, int(round(tokens / seqs)))] * seqs      # verl logs the total; spread evenly
    fwd = flop_model.forward(lens)
    state.ledger.add("rollout", fwd)
    state.ledger.add("recompute", fwd)                     # verl recomputes old log-probs
    if cfg.rl.kl_coef:
        state.ledger.add("reference", fwd)
    state.ledger.add("update", flop_model.train(lens))
    extra = data.get("curriculum/extra_prompt_tokens", 0) + data.get("curriculum/extra_response_tokens", 0)
    if extra:           # rollouts an online curriculum filtered out: spent, not trained on
        n = max(1, int(data.get("curriculum/extra_prompts", 1)) * cfg.rl.group_size)
        state.ledger.add("rollout", flop_model.forward([max(1, int(round(extra / n)))] * n))
    if rm_flop_model is not None:                          # the learned RM scores every sample
        state.ledger.add("rm", rm_flop_model.forward(lens))


def _diagnostics() -> dict[str, str]:
    """Diagnostic switches set in the trial's environment (``ARL_HF_*``) for the run's workers."""
    return {k: v for k, v in os.environ.items() if k.startswith("ARL_HF_")}


def _learned_rm(cfg: Config, log):
    """(checkpoint id, FlopModel, held-out metrics) of this trial's learned RM, trained once
    (cached, ``serve.rm.ensure_rm``) and served by the grid's endpoint; (None, None, {}) for a
    rule reward."""
    from core.plugins import registry
    if registry().get("rewards", cfg.reward.name).kind != "learned":
        return None, None, {}
    from transformers import AutoConfig

    from core.flops import FlopModel
    from core.rm import ensure_rm
    key, path, metrics = ensure_rm(cfg, log)
    return key, FlopModel.from_config(AutoConfig.from_pretrained(path)), metrics


def _pdeathsig() -> None:
    """In the child: die when the trial process that started us dies (Linux)."""
    import ctypes
    import signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except OSError:
        pass


# --- execution -------------------------------------------------------------------------------------
@dataclass
class Launch:
    """One launch of ``main_ppo`` for a trial, and what reading its output back needs."""
    cmd: list[str]
    env: dict[str, str]
    state: State
    metrics_file: Path
    n_val: int
    flop_model: object
    tokenizer: object
    rm_flop_model: object | None
    rm_metrics: dict
    sft_flops: float = 0.0


def _prepare(cfg: Config, workdir: Path, log) -> Launch:
    import pyarrow.parquet as pq
    import ray
    from transformers import AutoConfig, AutoTokenizer

    from core import models
    from core.flops import FlopModel
    from core.tracking import experiment_name
    if cfg.size.path is None:     # tiny ladder: write the random-init model verl will load
        models.model_source(cfg.size, Path(cfg.cache_dir).resolve(), seed=cfg.data.seed)
    _, sft_flops = ensure_sft_base(cfg, log)   # with D_SFT: verl's SFT trainer makes the base (cached)
    if not (workdir / "data" / "train.parquet").exists():
        from core.backends.verl_agent import prepare_trial
        prepare_trial(cfg, workdir, write_data(cfg, workdir, log))   # episodes: the agent loop
    state = State(workdir)
    state.launches += 1
    state.save()
    metrics_file = workdir / "verl_metrics" / f"launch_{state.launches}.jsonl"
    metrics_file.parent.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_RUN")}
    env.update(PYTHONUNBUFFERED="1", **environment(cfg))
    rm_model_id, rm_flop_model, rm_metrics = _learned_rm(cfg, log)
    address = ray.get_runtime_context().gcs_address if ray.is_initialized() else "auto"
    cmd = command(cfg, workdir, address=address, experiment=experiment_name(cfg), trial=workdir.name,
                  env_vars={"VERL_FILE_LOGGER_PATH": str(metrics_file), **_diagnostics()},
                  rm_model_id=rm_model_id)
    path = model_path(cfg)
    return Launch(cmd, env, state, metrics_file, pq.read_metadata(workdir / "data" / "val.parquet").num_rows,
                  FlopModel.from_config(AutoConfig.from_pretrained(path)),
                  AutoTokenizer.from_pretrained(path), rm_flop_model, rm_metrics, sft_flops)


def _step_metrics(cfg: Config, workdir: Path, launch: Launch, step: int, record: dict,
                  finished: bool):
    """(metrics, checkpoint or None) of a step verl logged, or None while its validation dump
    is still being written."""
    state = launch.state
    dump = workdir / "validation" / f"{step}.jsonl"
    rows = read_dump(dump) if dump.exists() else []
    complete = len(rows) >= launch.n_val * cfg.eval.n_samples
    if _is_eval_step(cfg, step) and not complete and not finished:
        return None                 # verl writes the dump in the background: wait for it
    metrics = {**verl_metrics(record), "step": step}
    count = step not in state.counted          # FLOPs of a step go in once
    if step > 0 and count:
        _step_flops(cfg, record, launch.flop_model, state, launch.rm_flop_model)
    if step == 0:
        metrics.update(launch.rm_metrics)
    ckpt = None
    if rows and complete:
        metrics.update(parse_validation_dump(dump, cfg.eval.k_max, rows))
        if "turns" in rows[0]:                 # multi-turn episodes: return, success, turns
            from core.backends.verl_agent import dump_metrics
            metrics.update(dump_metrics(rows))
        if count and "turn_tokens" in rows[0]:   # episodes: every turn's forward, as executed
            from core.backends.verl_agent import dump_flops
            state.ledger.add("eval", dump_flops(rows, launch.flop_model))
        elif count:
            state.ledger.add("eval", launch.flop_model.forward(
                [len(launch.tokenizer(r["input"] + r["output"])["input_ids"]) for r in rows]))
        ckpt = workdir / "tune_checkpoint"    # Tune keeps a marker; verl resumes from its own
        ckpt.mkdir(exist_ok=True)
        (ckpt / "trainer.json").write_text(json.dumps({"step": step}))
    if count:
        state.counted.add(step)
        state.save()
    return {**metrics, **state.ledger.metrics(), "compute/flops_sft": launch.sft_flops}, ckpt


def run(cfg: Config, workdir: Path, resume: Path | None = None, log=print):
    """Run verl for this trial; yield (metrics, checkpoint folder or None) once per step."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    launch = _prepare(cfg, workdir, log)
    log(f"[verl] launch {launch.state.launches}: {shlex.join(launch.cmd)}")
    records: dict[int, dict] = {}
    reader = MetricsFile(launch.metrics_file)
    with open(workdir / "verl.log", "ab") as out:
        proc = subprocess.Popen(launch.cmd, cwd=workdir, env=launch.env, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
        while True:
            finished = proc.poll() is not None
            for step, data in reader.new_records():
                records[step] = {**records.get(step, {}), **data}
            for step in sorted(s for s in records if s not in launch.state.reported):
                got = _step_metrics(cfg, workdir, launch, step, records[step], finished)
                if got is None:
                    break
                yield got
                # recorded once the caller has taken the step: a crash before this line makes
                # the step come again (the grid's MLflow logging keeps the first), never vanish
                launch.state.reported.add(step)
                launch.state.save()
            if finished:
                break
            time.sleep(POLL_S)
    if proc.returncode != 0:
        tail = (workdir / "verl.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"verl main_ppo exited with {proc.returncode}; end of {workdir / 'verl.log'}:\n{tail}")
