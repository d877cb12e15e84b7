"""Each backend's config checks, and where a trial computes (``device``).

The config check (``core.config.check``) calls ``check_backend``; this module imports nothing
that imports the config, so the config never depends on a backend's implementation (a test
checks that the project's import graph has no cycle).
"""
from __future__ import annotations

import shutil
from typing import Any

from core.errors import ConfigError

NAMES = ("local", "verl")


def local_gpus() -> int:
    """GPUs on this machine (nvidia-smi, else torch)."""
    if shutil.which("nvidia-smi"):
        import subprocess
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            return sum(line.startswith("GPU ") for line in out.stdout.splitlines())
        except (OSError, subprocess.SubprocessError):
            return 0
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def resolve_device(cfg: Any, cluster_gpus: float | None = None) -> str:
    """``gpu`` or ``cpu`` for ``device=auto``: the joined cluster's GPUs when given, else this
    machine's."""
    if cfg.device != "auto":
        return cfg.device
    gpus = cluster_gpus if cluster_gpus is not None else local_gpus()
    return "gpu" if gpus > 0 else "cpu"


def check_local(cfg: Any) -> None:
    if cfg.device == "gpu":
        raise ConfigError("device", cfg.device, "the local backend trains on the CPU; use "
                          "backend=verl for GPUs", allowed=["auto", "cpu"])


def check_verl(cfg: Any) -> None:
    from core.plugins import registry
    device = resolve_device(cfg)
    if device == "gpu" and cfg.size.path is None:
        raise ConfigError("backend", cfg.backend,
                          f"verl on GPUs loads checkpoints by hub id or path; size {cfg.model!r} of "
                          f"ladder {cfg.ladder.name!r} has none (use ladder=r1_distill scale=r1, "
                          "or device=cpu for the tiny ladder)")
    if device == "gpu" and cfg.size.resources.gpus < 1:
        raise ConfigError(f"ladder.sizes.{cfg.model}.resources.gpus", cfg.size.resources.gpus,
                          "verl on GPUs needs at least 1 GPU per trial")
    if cfg.eval.temperature <= 0:
        raise ConfigError("eval.temperature", cfg.eval.temperature,
                          "verl's V1 validation ignores do_sample: pass@k needs sampling at temperature > 0")
    if device == "gpu" and registry().get("rewards", cfg.reward.name).kind == "learned":
        raise ConfigError("reward.name", cfg.reward.name,
                          "a learned RM is trained inside the trial by the embedded trainer, which runs "
                          "on the CPU: the RM study runs on the tiny ladder (device=cpu) until RM "
                          "training moves to GPUs", allowed=["a rule reward, e.g. guru"])
    sources = registry().get("datasets", cfg.data.dataset).data_sources
    if cfg.data.d_sft and any(d.startswith("env__") for d in sources):      # multi-turn episodes
        raise ConfigError("data.d_sft", cfg.data.d_sft, "verl's SFT trainer reads one prompt and one "
                          "response per row; the multi-turn expert warm start runs on the local backend "
                          "(start verl from a local base via ladder.sizes.<size>.path, or set data.d_sft=0 "
                          "and sft.steps=0)")
    if cfg.rl.max_flops is not None:
        raise ConfigError("rl.max_flops", cfg.rl.max_flops, "verl stops at rl.steps; a compute "
                          "budget is a local-backend option (set rl.steps instead)")


CHECKS = {"local": check_local, "verl": check_verl}


def check_backend(cfg: Any) -> None:
    """The checks of ``cfg.backend`` (a ConfigError naming the key)."""
    if cfg.backend not in CHECKS:
        raise ConfigError("backend", cfg.backend, allowed=NAMES)
    CHECKS[cfg.backend](cfg)
