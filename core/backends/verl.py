"""The distributed backend: a trial runs verl 0.9.1's ``main_ppo`` with the same config,
plugins, metric names and MLflow run as the local backend.

- **Device** (``device: auto | gpu | cpu``): ``gpu`` runs vLLM or SGLang rollouts
  (``rl.engine``) on the GPUs of the Ray cluster; ``cpu`` runs verl's real trainer without a
  GPU (``verl_cpu/``: a cpu platform and an ``hf`` rollout registered through verl's own
  hooks, gloo, FSDP2, sdpa attention, logical GPUs for verl's resource pools). ``auto`` is
  ``gpu`` when the cluster (or, without one, this machine) has GPUs; the grid resolves it
  before handing trials their config, so every trial runs one concrete mode.
- **Config translation** (``verl_overrides``): the trial's validated config becomes Hydra
  overrides of verl's own installed ``ppo_trainer`` config (``compose_verl`` composes them with
  the compose API, which the tests and ``--dry-run`` check). Only verl 0.9.1's ``reward.*``
  keys are used. CPU-mode overrides are composed here, never typed by the user. Any further
  verl key passes through from ``verl.<key>=<value>`` overrides, last, so it wins.
- **Trials** (``verl_trial.py``): data as parquet in verl's schema, ``main_ppo`` as a
  subprocess joined to the grid's Ray cluster, verl's own metrics read back from its ``file``
  logger and our pass@k from its validation dumps, both reported once per step.

Tune books one CPU and no GPU per trial: verl creates its own placement groups, which a Tune
placement group would capture; the grid caps concurrency at the cluster's GPUs (logical ones
in cpu mode) divided by one trial's.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends.checks import resolve_device
from core.hydra_utils import flatten_keys, hydra_value

if TYPE_CHECKING:
    from core.config import Config

BRIDGE = Path(__file__).resolve().parents[1] / "verl_reward.py"
# Modules verl imports in every process of a run: one TransferQueue per run (always), and the
# cpu platform with its hf rollout (cpu mode).
GPU_ENV = {"VERL_USE_EXTERNAL_MODULES": "core.backends.verl_tq"}
CPU_ENV = {"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": "core.backends.verl_tq,core.backends.verl_cpu"}
# Logical CPUs one verl trial books in cpu mode (task runner, the trainer pool's bundle of 3,
# TransferQueue's controller and storage, agent-loop and reward workers); Ray's CPU counts are
# bookkeeping, the trial's processes share the machine's real cores.
CPU_MODE_LOGICAL_CPUS = 12
CPU_MODE_MAX_TOKENS = 16384   # tokens per micro-batch (dynamic batch size) on the CPU


# --- device ------------------------------------------------------------------------------------
def finalize(cfg: Config, cluster_gpus: float | None) -> dict[str, Any]:
    """``device=auto`` made concrete for every trial of a grid."""
    return {"device": resolve_device(cfg, cluster_gpus)} if cfg.device == "auto" else {}


def model_path(cfg: Config) -> str:
    """The checkpoint verl loads: with D_SFT the SFT'd base under the cache (``verl_sft``), else a
    hub id or folder, or (tiny ladder) the model's folder under the cache; ``verl_trial`` writes
    either before launching."""
    from core.backends.verl_sft import base_path
    return base_path(cfg)


# --- config translation ----------------------------------------------------------------------------
def reward_kwargs(cfg: Config, rm_model_id: str | None = None) -> dict[str, Any]:
    """What the bridge needs to rebuild this trial's reward (plugin name and settings)."""
    kw: dict[str, Any] = {"reward_name": cfg.reward.name, "format_weight": cfg.reward.format_weight}
    if cfg.reward.options:                       # the plugin's own settings, as one JSON string
        import json
        kw["reward_options"] = json.dumps(cfg.reward.options, sort_keys=True)
    if cfg.reward.name == "learned_rm" or cfg.reward.rm.url:
        rm = cfg.reward.rm
        kw.update(rm_url=rm.url, rm_size=rm.size, rm_gold=rm.gold, rm_timeout_s=rm.timeout_s,
                  rm_retries=rm.retries)
        if rm.token:
            kw["rm_token"] = rm.token
        if rm_model_id:
            kw["rm_model_id"] = rm_model_id
    return kw


def _common(cfg: Config, workdir: Path, experiment: str, trial: str) -> dict[str, Any]:
    rl, ev = cfg.rl, cfg.eval
    ov = {
        "algorithm.adv_estimator": rl.adv_estimator,
        "algorithm.use_kl_in_reward": False,
        "data.train_files": str(workdir / "data" / "train.parquet"),
        "data.val_files": str(workdir / "data" / "val.parquet"),
        "data.train_batch_size": rl.prompts_per_step,
        "data.max_prompt_length": rl.max_prompt_tokens,
        "data.max_response_length": rl.max_new_tokens,
        "data.shuffle": False,                      # the parquet is in curriculum order
        "data.seed": cfg.seed,
        "actor_rollout_ref.model.path": model_path(cfg),
        "actor_rollout_ref.actor.optim.lr": cfg.rl_lr,
        "actor_rollout_ref.actor.optim.lr_warmup_steps": rl.warmup_steps,
        "actor_rollout_ref.actor.ppo_mini_batch_size": rl.prompts_per_step,
        "actor_rollout_ref.actor.clip_ratio": rl.clip_ratio,
        "actor_rollout_ref.actor.loss_agg_mode": rl.loss_agg_mode,
        "actor_rollout_ref.actor.grad_clip": rl.max_grad_norm,
        "actor_rollout_ref.actor.use_kl_loss": bool(rl.kl_coef),
        "actor_rollout_ref.rollout.n": rl.group_size,
        "actor_rollout_ref.rollout.temperature": rl.temperature,
        "actor_rollout_ref.rollout.top_p": rl.top_p,
        "actor_rollout_ref.rollout.val_kwargs.n": ev.n_samples,
        "actor_rollout_ref.rollout.val_kwargs.temperature": ev.temperature,
        "actor_rollout_ref.rollout.val_kwargs.top_p": ev.top_p,
        "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
        "trainer.total_training_steps": rl.steps,
        "trainer.test_freq": ev.every,
        "trainer.save_freq": ev.every,
        "trainer.val_before_train": True,
        "trainer.validation_data_dir": str(workdir / "validation"),
        "trainer.default_local_dir": str(workdir / "verl_checkpoints"),
        "trainer.resume_mode": "auto",
        # verl's metrics go to a JSON-lines file the trial reads back and reports once per
        # step (the grid driver is MLflow's single writer; a resumed run repeats no step)
        "trainer.logger": ["console", "file"],
        "trainer.project_name": experiment,
        "trainer.experiment_name": trial,
        "reward.custom_reward_function.path": str(BRIDGE),
        "reward.custom_reward_function.name": "compute_score",
        "reward.reward_manager.name": "naive",
    }
    if rl.kl_coef:
        ov.update({"actor_rollout_ref.actor.kl_loss_coef": rl.kl_coef,
                   "actor_rollout_ref.actor.kl_loss_type": "low_var_kl"})
    return ov


def online_curriculum(cfg: Config) -> bool:
    """Whether the trial's curriculum hears outcomes (verl's custom sampler) or is a fixed
    order (the parquet's)."""
    from core.plugins import registry
    return registry().get("curricula", cfg.curriculum.name).is_online(cfg.curriculum.options)


def _sampler(cfg: Config) -> dict[str, Any]:
    """An online curriculum inside verl's V1 trainer (``core/backends/verl_sampler.py``): its
    dataset serves the prompts the curriculum picks, its replay buffer feeds it the rewards."""
    module = "pkg://core.backends.verl_sampler"
    return {"data.custom_cls.path": module, "data.custom_cls.name": "CurriculumDataset",
            "trainer.v1.sampler.custom_sampler.path": module,
            "trainer.v1.sampler.custom_sampler.name": "CurriculumSampler",
            "++trainer.v1.sampler.sampler_kwargs": {"curriculum": cfg.curriculum.name,
                                                  "options": dict(cfg.curriculum.options),
                                                  "seed": cfg.seed},
            "data.gen_batch_size": 1, "data.dataloader_num_workers": 0,
            "trainer.v1.trainer_mode": "sync",
            "trainer.total_epochs": cfg.rl.steps}   # verl stops after epochs x (pool // batch) steps


def _gpu(cfg: Config) -> dict[str, Any]:
    res = cfg.size.resources
    return {"actor_rollout_ref.rollout.name": cfg.rl.engine,
            "trainer.n_gpus_per_node": res.gpus, "trainer.nnodes": res.nodes}


def _cpu(cfg: Config) -> dict[str, Any]:
    """verl's real trainer without a GPU (see ``verl_cpu``): one logical GPU, the ``hf``
    rollout, FSDP2 in fp32, sdpa attention, dynamic micro-batches, one worker of each kind."""
    from core.backends.verl_sft import FP32
    ov = {"trainer.device": "cpu", "trainer.n_gpus_per_node": 1, "trainer.nnodes": 1,
          "actor_rollout_ref.rollout.name": "hf",
          "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
          "actor_rollout_ref.rollout.agent.num_workers": 1, "reward.num_workers": 1,
          "data.dataloader_num_workers": 0,
          "transfer_queue.backend.SimpleStorage.num_data_storage_units": 1,
          "actor_rollout_ref.model.use_remove_padding": False,
          "+actor_rollout_ref.model.override_config.attn_implementation": "sdpa"}
    for role in ("actor", "ref"):
        ov[f"actor_rollout_ref.{role}.strategy"] = "fsdp2"
        # the FSDP engine autocasts to mixed_precision.param_dtype (bf16 unless set);
        # fsdp_config.dtype is read by the Megatron engine only
        ov[f"+actor_rollout_ref.{role}.fsdp_config.mixed_precision"] = FP32
    ov.update({"actor_rollout_ref.actor.use_dynamic_bsz": True,
               "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": CPU_MODE_MAX_TOKENS,
               "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz": True,
               "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": CPU_MODE_MAX_TOKENS,
               "actor_rollout_ref.ref.log_prob_use_dynamic_bsz": True,
               "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": CPU_MODE_MAX_TOKENS})
    return ov


def verl_overrides(cfg: Config, workdir: Path, experiment: str = "agentic_rl_scaling",
                   trial: str = "trial", rm_model_id: str | None = None) -> list[str]:
    """Hydra overrides of verl's ``ppo_trainer`` for this trial (passthrough ``verl.*`` last)."""
    workdir = Path(workdir).resolve()
    ov = _common(cfg, workdir, experiment, trial)
    ov.update(_cpu(cfg) if resolve_device(cfg) == "cpu" else _gpu(cfg))
    if online_curriculum(cfg):
        ov.update(_sampler(cfg))
    from core.backends.verl_agent import trial_overrides
    ov.update(trial_overrides(cfg, workdir))    # environment episodes: verl's agent loop
    ov.update({f"+ray_kwargs.ray_init.runtime_env.env_vars.{k}": v for k, v in environment(cfg).items()})
    out = [f"{k}={hydra_value(v)}" for k, v in ov.items()]
    out += [f"+reward.custom_reward_function.reward_kwargs.{k}={hydra_value(v)}"
            for k, v in reward_kwargs(cfg, rm_model_id).items()]
    passthrough = {**flatten_keys(cfg.verl), **flatten_keys(cfg.size.verl)}   # the size's keys win
    out += [f"++{k}={hydra_value(v)}" for k, v in passthrough.items()]         # add or replace
    return out


def verl_config_dir() -> Path:
    import verl
    return Path(verl.__file__).resolve().parent / "trainer" / "config"


def compose_verl(overrides: list[str]):
    """verl's installed ``ppo_trainer`` config composed with ``overrides`` (CPU-safe)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(verl_config_dir()), version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def command(cfg: Config, workdir: Path, address: str = "auto", env_vars: dict | None = None,
            **kw) -> list[str]:
    """The exact command a trial runs (``--dry-run`` prints it); ``address`` is the Ray cluster
    it joins (a trial passes its own cluster's GCS address); ``env_vars`` reach every process
    of the run (verl's trainer runs in Ray actors, not in this command's process)."""
    extra = [f"+ray_kwargs.ray_init.runtime_env.env_vars.{k}={hydra_value(v)}" for k, v in (env_vars or {}).items()]
    return [sys.executable, "-m", "verl.trainer.main_ppo", *verl_overrides(cfg, workdir, **kw),
            *extra, f"+ray_kwargs.ray_init.address={address}"]


def environment(cfg: Config) -> dict[str, str]:
    """Environment variables every process of the run needs (its driver gets them in its
    environment, its Ray workers through the run's runtime_env)."""
    return dict(CPU_ENV if resolve_device(cfg) == "cpu" else GPU_ENV)


# --- the backend record's functions ----------------------------------------------------------------
def resources(cfg: Config) -> dict[str, float]:
    return {"cpu": 1, "gpu": 0}   # verl books its own placement groups; Tune must not capture them


def trial_gpus(cfg: Config) -> int:
    """GPUs one trial takes (logical ones in cpu mode)."""
    if resolve_device(cfg) == "cpu":
        return 1
    return cfg.size.resources.gpus * cfg.size.resources.nodes


def ray_init(trials: list[tuple[dict, Config]]) -> dict[str, Any]:
    """A local Ray for cpu-mode trials gets logical GPUs (verl's pools book one per trainer
    process) and logical CPUs for verl's actors, two trials at a time."""
    cpu_trials = [t for _, t in trials if resolve_device(t) == "cpu"]
    if not cpu_trials:
        return {}
    import os
    at_once = min(2, len(cpu_trials))
    return {"num_gpus": at_once,
            "num_cpus": max(os.cpu_count() or 1, 1 + at_once * CPU_MODE_LOGICAL_CPUS)}


def max_concurrent(cfg: Config, trials: list[tuple[dict, Config]]) -> int:
    """``grid.max_concurrent``, else the cluster's GPUs divided by the most one trial takes."""
    if cfg.grid.max_concurrent is not None:
        return cfg.grid.max_concurrent
    import ray
    gpus = ray.cluster_resources().get("GPU", 0)
    need = max(trial_gpus(t) for _, t in trials)
    if gpus < need:
        from core.errors import UserError
        raise UserError(f"the Ray cluster has {gpus:g} GPU(s) but a verl trial needs {need}; "
                        "start the cluster with GPUs (or, for cpu mode, logical ones: "
                        "`ray start --head --num-gpus=1`)")
    return max(1, int(gpus // need))


def _overrides(cfg: Config, values: dict) -> str:
    """``grid=NAME [scale=P] key=value ...`` selecting one trial (for the synthesis commands)."""
    import json
    parts = [f"grid={cfg.grid.name}"] + ([f"scale={cfg.preset}"] if cfg.preset else [])
    parts += [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in values.items()]
    return " ".join(shlex.quote(p) for p in parts)


def dry_run(cfg: Config, trials: list[tuple[dict, Config]]) -> str:
    """Per trial, the verl command a grid would run (``python -m core.tune ... --dry-run``)."""
    from core.backends.verl_sft import needs_sft, sft_dry_run
    from core.layout import run_dir, trial_key
    from core.tracking import experiment_name
    out = run_dir(cfg)
    device = resolve_device(cfg)
    lines = [f"# grid {cfg.grid.name}: {len(trials)} verl trial(s); run folder {out}",
             f"# device: {device}" + (" (auto: no GPU found here; a cluster with GPUs runs gpu mode)"
                                      if cfg.device == "auto" and device == "cpu" else ""),
             "# each trial first writes its data/train.parquet (curriculum order) and data/val.parquet,",
             "# then runs this (verl's metrics go to its file logger; the trial reports them to MLflow)"]
    from core import synth
    from core.synth import verl as synth_verl
    env, bases, synths = environment(cfg), set(), set()
    for i, (values, t) in enumerate(trials):
        key = trial_key(values)
        cmd = command(t, out / "trials" / key, experiment=experiment_name(cfg), trial=key)
        lines.append(f"\n# trial {i}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        if needs_sft(t) and t.data.sft_source is not None and synth.key(t) not in synths:
            synths.add(synth.key(t))                         # first the D_SFT examples, sampled
            lines.append(synth_verl.dry_run(t, _overrides(cfg, values)))    # by the teacher
        if needs_sft(t) and model_path(t) not in bases:     # then verl's SFT trainer makes the base
            bases.add(model_path(t))
            lines.append(sft_dry_run(t))
        head = " ".join([*(f"{k}={v}" for k, v in env.items()), *map(shlex.quote, cmd[:3])])
        lines.append(" \\\n    ".join([head, *(shlex.quote(c) for c in cmd[3:])]))
    return "\n".join(lines)
