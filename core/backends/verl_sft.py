"""The SFT warm start on the verl backend: verl 0.9.1's own SFT trainer, cached like the local one.

For ``data.d_sft > 0`` a verl trial first trains its base on the D_SFT worked examples with
``python -m verl.trainer.sft_trainer_ray`` (verl's SFT trainer on Ray), then runs ``main_ppo``
from the result. The Ray entry point, not the torchrun one (``sft_trainer.py``), because a
trial books no GPU itself: the Ray trainer books its GPUs through verl's resource pools on the
grid's cluster, as ``main_ppo`` does, where torchrun would take the GPUs of whichever node the
trial process landed on. It joins the cluster through ``RAY_ADDRESS``.

- **Data** (``write_sft_data``): ``select(cfg, "sft")`` as verl's multi-turn chat parquet (a
  ``messages`` column): the record's chat messages, then an assistant turn holding
  ``extra_info.sft_response``. verl reads it through ``verl_sft_data.PromptResponseDataset``
  (``data.custom_cls``), which tokenizes a row as the local warm start does (the prompt as the
  policy is prompted, then response + EOS, the loss on those only); verl's own
  ``MultiTurnSFTDataset`` renders turns apart and drops an R1 turn's reasoning.
- **Settings** (``sft_overrides``): ``sft.steps``, ``sft.batch_size`` and the size's SFT lr over
  verl's ``sft_trainer_engine`` config; AdamW with the local betas and no weight decay, gradient
  clip 1.0, linear warmup over a tenth of the steps then cosine to 0 (verl's ``cosine`` schedule;
  ``zero_indexed_step=false`` makes step 1 train at lr/warmup as locally). The checkpoint at
  the last step includes ``hf_model``: a Hugging Face folder ``main_ppo`` loads.
- **CPU mode**: the cpu platform of ``verl_cpu`` (``VERL_PLATFORM=cpu``) reaches the trainer's
  Ray workers through the run's job runtime env (``ray_runtime_env``, Ray's
  ``RAY_RUNTIME_ENV_HOOK``), one logical GPU, FSDP2 with fp32 parameters and compute
  (``engine.mixed_precision``: the FSDP engine otherwise autocasts to bf16), sdpa attention,
  padded (not packed) sequences, no activation checkpointing.
- **Cache** (``ensure_sft_base``): ``<cache_dir>/sft/<size>-<base_key>-verl`` with the local
  warm start's key (``core.backends.sft.base_key``) and file lock, so the seeds and RL settings
  of a size share one base and concurrent trials wait instead of training twice; ``-verl``
  keeps it apart from a base the local trainer made from the same settings.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.backends.checks import resolve_device
from core.hydra_utils import flatten_keys, hydra_value

if TYPE_CHECKING:
    from core.config import Config

ENTRY = "verl.trainer.sft_trainer_ray"
CONFIG = "sft_trainer_engine"
HOOK = f"{__name__}.ray_runtime_env"
DATASET = ("core.backends.verl_sft_data", "PromptResponseDataset")   # verl's data.custom_cls
# verl settings the SFT workers need in every process (cpu mode): the job's runtime env
WORKER_ENV = ("VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES")
CPU_ENV = {"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": "core.backends.verl_cpu",
           "RAY_RUNTIME_ENV_HOOK": HOOK}
CPU_MODE_MAX_TOKENS = 16384   # tokens per micro-batch (dynamic batch size) on the CPU
BETAS = (0.9, 0.98)           # the local warm start's AdamW (core/backends/sft.py)


# --- where ------------------------------------------------------------------------------------
def sft_folder(cfg: Config) -> Path:
    """The cached base: the local warm start's key, a folder of its own."""
    from core.backends.sft import base_key
    return Path(cfg.cache_dir).resolve() / "sft" / f"{cfg.model}-{base_key(cfg)}-verl"


def needs_sft(cfg: Config) -> bool:
    """Whether the trial trains a base first (D_SFT examples and SFT steps to train them)."""
    return cfg.data.d_sft > 0 and cfg.sft.steps > 0


def base_path(cfg: Config) -> str:
    """The checkpoint ``main_ppo`` loads: the SFT'd base, else the size's own."""
    return str(sft_folder(cfg)) if needs_sft(cfg) else source(cfg)


def source(cfg: Config) -> str:
    """The checkpoint SFT starts from: the size's hub id or folder, or the tiny model's folder."""
    if cfg.size.path is not None:
        return cfg.size.path
    from core.models import tiny_folder
    return str(tiny_folder(cfg.size, Path(cfg.cache_dir).resolve(), seed=cfg.data.seed))


# --- data --------------------------------------------------------------------------------------
def sft_messages(record: dict) -> list[dict]:
    """A worked example as one chat: the prompt's turns, then the response as the assistant's."""
    turns = [{"role": m["role"], "content": m["content"]} for m in record["prompt"]]
    return turns + [{"role": "assistant", "content": record["extra_info"]["sft_response"]}]


def write_sft_data(cfg: Config, folder: Path, tokenizer=None) -> Path:
    """D_SFT as verl's chat parquet (``messages``); with fewer rows than one batch, repeated
    to fill one (verl drops an incomplete batch). With the ``tokenizer`` (the base's), each
    row's token count goes to ``sft_data.json`` beside it (``max_tokens`` sizes verl's
    ``data.max_length``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core import data
    records = data.select(cfg, "sft")
    rows = [{"messages": sft_messages(r)} for r in records]
    rows = rows * math.ceil(cfg.sft.batch_size / len(rows))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sft.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    if tokenizer is not None:
        from core.backends.verl_sft_data import sft_tokens
        tokens = [len(sft_tokens(tokenizer, r["messages"])[0]) for r in rows[:len(records)]]
        (folder / "sft_data.json").write_text(json.dumps(
            {"rows": len(rows), "records": len(records), "max_tokens": max(tokens),
             "tokens": sum(tokens)}))
    return path


def _max_length(cfg: Config, data_file: Path) -> int:
    """The longest example in tokens (measured by ``write_sft_data``), else the RL budget."""
    meta = Path(data_file).with_name("sft_data.json")
    if meta.exists():
        return int(json.loads(meta.read_text())["max_tokens"])
    return cfg.rl.max_prompt_tokens + cfg.rl.max_new_tokens


# --- config translation ----------------------------------------------------------------------------
def _common(cfg: Config, data_file: Path, out_dir: Path, max_length: int) -> dict[str, Any]:
    steps, batch = cfg.sft.steps, cfg.sft.batch_size
    meta = Path(data_file).with_name("sft_data.json")
    rows = json.loads(meta.read_text())["rows"] if meta.exists() else max(cfg.data.d_sft, batch)
    return {
        "data.train_files": str(data_file), "data.val_files": None,
        "data.messages_key": "messages", "data.pad_mode": "no_padding",
        "data.custom_cls.path": f"pkg://{DATASET[0]}", "data.custom_cls.name": DATASET[1],
        "data.train_batch_size": batch,
        "data.max_length": max_length, "data.truncation": "error",
        "data.use_dynamic_bsz": True,
        "model.path": source(cfg),
        "optim.lr": cfg.sft_lr, "optim.weight_decay": 0.0, "optim.betas": list(BETAS),
        "optim.clip_grad": 1.0, "optim.lr_scheduler_type": "cosine",
        "optim.lr_warmup_steps": max(1, steps // 10), "optim.min_lr_ratio": 0.0,
        "optim.zero_indexed_step": False,
        "trainer.total_training_steps": steps,
        # verl stops at whichever comes first: enough epochs that the steps do
        "trainer.total_epochs": math.ceil(steps / max(1, rows // batch)),
        "trainer.save_freq": -1, "trainer.test_freq": -1,     # one checkpoint, at the last step
        "checkpoint.save_contents": ["hf_model"],
        "trainer.default_local_dir": str(Path(out_dir) / "checkpoints"),
        "trainer.resume_mode": "disable",
        "trainer.seed": cfg.data.seed,
        "trainer.logger": ["console", "file"],
        "trainer.project_name": "sft", "trainer.experiment_name": sft_folder(cfg).name,
    }


# full fp32 on the CPU: verl's FSDP engine autocasts to mixed_precision.param_dtype, bf16 by default
FP32 = {"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}


def _cpu(cfg: Config, max_length: int) -> dict[str, Any]:
    """verl's SFT trainer without a GPU: one logical GPU, FSDP2 in fp32, sdpa, padded batches."""
    return {"trainer.device": "cpu", "trainer.n_gpus_per_node": 1, "trainer.nnodes": 1,
            "engine.strategy": "fsdp2", "engine.model_dtype": "fp32",
            "+engine.mixed_precision": FP32,
            "engine.use_torch_compile": False,
            "model.use_remove_padding": False, "model.enable_gradient_checkpointing": False,
            "+model.override_config.attn_implementation": "sdpa",
            "data.max_token_len_per_gpu": max(CPU_MODE_MAX_TOKENS, max_length)}


def _gpu(cfg: Config, max_length: int) -> dict[str, Any]:
    """The trial's GPUs (the ladder's resources) with the size's actor settings for the same
    model in ``main_ppo``: sequence parallelism, offload, token budget, packing, checkpointing."""
    res = cfg.size.resources
    ppo = {**flatten_keys(cfg.verl), **flatten_keys(cfg.size.verl)}     # the size's keys win
    actor, model = "actor_rollout_ref.actor.", "actor_rollout_ref.model."
    sp = int(ppo.get(actor + "ulysses_sequence_parallel_size", 1))
    dp = res.gpus * res.nodes // sp
    if cfg.sft.batch_size % dp:
        from core.errors import ConfigError
        raise ConfigError("sft.batch_size", cfg.sft.batch_size,
                          f"verl's SFT splits a batch evenly over the {dp} data-parallel ranks of "
                          f"size {cfg.model!r} ({res.nodes} x {res.gpus} GPUs, sequence parallel {sp})")
    ov: dict[str, Any] = {"trainer.n_gpus_per_node": res.gpus, "trainer.nnodes": res.nodes,
                          "engine.ulysses_sequence_parallel_size": sp,
                          "data.max_token_len_per_gpu": max(max_length, int(
                              ppo.get(actor + "ppo_max_token_len_per_gpu", max_length)))}
    for src, dst in ((actor + "fsdp_config.param_offload", "engine.param_offload"),
                     (actor + "fsdp_config.optimizer_offload", "engine.optimizer_offload"),
                     (model + "use_remove_padding", "model.use_remove_padding"),
                     (model + "enable_gradient_checkpointing", "model.enable_gradient_checkpointing")):
        if src in ppo:
            ov[dst] = ppo[src]
    return ov


def sft_overrides(cfg: Config, data_file: Path, out_dir: Path, max_length: int | None = None) -> list[str]:
    """Hydra overrides of verl's ``sft_trainer_engine`` for this trial's warm start."""
    max_length = max_length or _max_length(cfg, data_file)
    ov = _common(cfg, Path(data_file).resolve(), Path(out_dir).resolve(), max_length)
    ov.update(_cpu(cfg, max_length) if resolve_device(cfg) == "cpu" else _gpu(cfg, max_length))
    return [f"{k}={hydra_value(v)}" for k, v in ov.items()]


def compose_sft(overrides: list[str]):
    """verl's installed ``sft_trainer_engine`` config composed with ``overrides`` (CPU-safe)."""
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    config_dir = Path(verl.__file__).resolve().parent / "trainer" / "config"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(CONFIG, overrides=overrides)


def sft_command(cfg: Config, data_file: Path, out_dir: Path, max_length: int | None = None) -> list[str]:
    """The exact command of the warm start (``--dry-run`` prints it, with ``sft_environment``)."""
    return [sys.executable, "-m", ENTRY, *sft_overrides(cfg, data_file, out_dir, max_length)]


def sft_dry_run(cfg: Config) -> str:
    """The warm start as ``--dry-run`` prints it (environment, command, one argument a line)."""
    work = sft_folder(cfg).with_name(sft_folder(cfg).name + ".tmp")
    cmd = sft_command(cfg, work / "data" / "sft.parquet", work)
    env = sft_environment(cfg, "<the grid's Ray cluster>")
    head = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), *map(shlex.quote, cmd[:3])])
    return (f"# SFT warm start of {cfg.model} on {cfg.data.d_sft} examples, once per base (the seeds "
            f"share it), cached in {sft_folder(cfg)}; data.max_length is measured on the data\n"
            + " \\\n    ".join([head, *(shlex.quote(c) for c in cmd[3:])]))


def sft_environment(cfg: Config, address: str | None = None) -> dict[str, str]:
    """Environment of the command: the Ray cluster it joins; in cpu mode the cpu platform, which
    ``ray_runtime_env`` hands on to the trainer's Ray workers."""
    env = dict(CPU_ENV) if resolve_device(cfg) == "cpu" else {}
    if address:
        env["RAY_ADDRESS"] = address
    return env


def ray_runtime_env(runtime_env: dict | None) -> dict:
    """``RAY_RUNTIME_ENV_HOOK`` of the SFT driver: its job's workers get this process's verl
    platform settings (verl's ``ray.init()`` takes no runtime env of its own)."""
    runtime_env = dict(runtime_env or {})
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    runtime_env["env_vars"] = {**env, **(runtime_env.get("env_vars") or {})}
    return runtime_env


# --- the cached base -----------------------------------------------------------------------------
def ensure_sft_base(cfg: Config, log=print, address: str | None = None) -> tuple[str, float]:
    """The folder of this trial's base policy (verl-SFT'd once per key, cached) and the SFT
    FLOPs it cost; the size's own checkpoint and 0 without D_SFT. ``address``: the Ray cluster
    the trainer joins (default: the one this process is connected to)."""
    from core import models
    cache = Path(cfg.cache_dir).resolve()
    start = models.model_source(cfg.size, cache, seed=cfg.data.seed)   # writes a tiny init
    if not needs_sft(cfg):
        return start, 0.0
    out = sft_folder(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # a second trial waits here, then reuses the base
        if not (out / "sft.json").exists():
            train(cfg, out, log, address)
        else:
            log(f"[verl sft {cfg.model}] reusing cached base {out.name}")
    return str(out), json.loads((out / "sft.json").read_text())["flops"]


def _address(address: str | None, cfg: Config) -> str | None:
    if address:
        return address
    import ray
    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address
    if os.environ.get("RAY_ADDRESS") or resolve_device(cfg) != "cpu":
        return None                  # verl's ray.init() finds the cluster (or starts one)
    from core.errors import UserError
    raise UserError("verl's SFT trainer on the CPU joins a Ray cluster with logical GPUs: run it "
                    "inside a grid, or start one (`ray start --head --num-gpus=1`) and set RAY_ADDRESS")


def train(cfg: Config, out: Path, log=print, address: str | None = None) -> float:
    """Run verl's SFT trainer and keep its final Hugging Face folder as ``out``; its FLOPs."""
    from transformers import AutoTokenizer
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)            # what a killed run left
    work.mkdir(parents=True)
    data_file = write_sft_data(cfg, work / "data", AutoTokenizer.from_pretrained(source(cfg)))
    cmd = sft_command(cfg, data_file, work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_RUN")}
    env.update(PYTHONUNBUFFERED="1", VERL_FILE_LOGGER_PATH=str(work / "metrics.jsonl"),
               **sft_environment(cfg, _address(address, cfg)))
    log(f"[verl sft {cfg.model}] {cfg.sft.steps} steps on {cfg.data.d_sft} examples: {shlex.join(cmd)}")
    t0 = time.time()
    with open(work / "verl_sft.log", "ab") as stdout:
        rc = subprocess.run(cmd, cwd=work, env=env, stdout=stdout, stderr=subprocess.STDOUT,
                            preexec_fn=_pdeathsig).returncode
    hf = work / "checkpoints" / f"global_step_{cfg.sft.steps}" / "huggingface"
    if rc != 0 or not (hf / "config.json").exists():
        tail = (work / "verl_sft.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"verl's SFT trainer exited with {rc} (no Hugging Face checkpoint at "
                           f"{hf}); end of {work / 'verl_sft.log'}:\n{tail}")
    from transformers import AutoConfig
    AutoConfig.from_pretrained(source(cfg)).save_pretrained(hf)   # the source's config (dtype), new weights
    steps = read_metrics(work / "metrics.jsonl")
    flops = sft_flops(cfg, hf, steps)
    losses = [steps[s]["train/loss"] for s in sorted(steps) if "train/loss" in steps[s]]
    (hf / "sft.json").write_text(json.dumps({
        "flops": flops, "steps": cfg.sft.steps, "d_sft": cfg.data.d_sft, "lr": cfg.sft_lr,
        "batch_size": cfg.sft.batch_size, "trainer": ENTRY, "loss_first": losses[0],
        "loss_last": losses[-1], "tokens": sum(s.get("train/global_tokens", 0) for s in steps.values()),
        "seconds": round(time.time() - t0, 1)}))
    for name in ("verl_sft.log", "metrics.jsonl"):
        shutil.copy(work / name, hf / name)
    hf.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    log(f"[verl sft {cfg.model}] loss {losses[0]:.3f} -> {losses[-1]:.3f}, {flops:.3g} FLOPs "
        f"({time.time() - t0:.0f}s); base {out}")
    return flops


def _pdeathsig() -> None:
    """In the child: die when the trial process that started us dies (Linux)."""
    import ctypes
    import signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except OSError:
        pass


def read_metrics(path: Path) -> dict[int, dict]:
    """verl's file logger: ``{"step": s, "data": {...}}`` lines, merged per step."""
    steps: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            steps.setdefault(int(rec["step"]), {}).update(rec["data"])
    return steps


def sft_flops(cfg: Config, model_dir: Path, steps: dict[int, dict]) -> float:
    """Training FLOPs from the tokens verl logged per step (``train/global_tokens``, no padding),
    spread evenly over the step's sequences."""
    from transformers import AutoConfig

    from core.flops import FlopModel
    model = FlopModel.from_config(AutoConfig.from_pretrained(model_dir))
    n = cfg.sft.batch_size
    return sum(model.train([max(1, round(d["train/global_tokens"] / n))] * n)
               for d in steps.values() if d.get("train/global_tokens"))
