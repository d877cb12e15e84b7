"""Trial backends: one record per backend, so nothing outside ``core/backends/`` tests a
backend's name.

- ``local``: the embedded trainer (``local.py``): Hugging Face ``generate`` rollouts and a torch
  update in the trial's own process, on the CPU.
- ``verl``: verl 0.9.1's ``main_ppo`` (``verl.py``, ``verl_trial.py``) with vLLM / SGLang rollouts
  on GPUs, or, on a machine or cluster without GPUs, its real trainer on the CPU
  (``verl_cpu/``: a cpu platform and an ``hf`` rollout registered through verl's own hooks).

A :class:`Backend` bundles what the config check, the grid driver, the CLI and a trial need
from a backend. Its functions import their heavy dependencies only when called, so
``core.config`` can check a config without importing torch, ray or verl.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.backends import checks


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    # run(cfg, workdir, resume=None, log=print) -> iterator of (metrics, checkpoint or None)
    run: Callable[..., Iterator[tuple[dict[str, float], Path | None]]]
    # the Ray Tune resources one trial books: {"cpu": float, "gpu": float}
    resources: Callable[[Any], dict[str, float]]
    # cross-key checks of this backend (raise core.errors.ConfigError)
    check: Callable[[Any], None]
    # extra ray.init kwargs when the grid starts a local Ray for these trials ({} if none)
    ray_init: Callable[[list], dict[str, Any]]
    # trials at once (None: as many as Tune's resources allow), given the running cluster
    max_concurrent: Callable[[Any, list], int | None]
    # concrete config values every trial gets once the cluster is known (e.g. device=cpu for
    # device=auto), given the joined cluster's GPUs (None: no cluster joined, look here)
    finalize: Callable[[Any, float | None], dict[str, Any]] = lambda cfg, gpus: {}
    # --dry-run: the exact command(s) each trial would run (None: not supported)
    dry_run: Callable[[Any, list], str] | None = None


def _lazy(module: str, attr: str):
    """``module.attr``, imported when first called (backends import torch, ray or verl)."""
    def call(*args, **kwargs):
        import importlib
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)
    return call


LOCAL = Backend(
    name="local", description="embedded GRPO trainer (HF generate + torch), CPU",
    run=_lazy("core.backends.local", "run"),
    resources=lambda cfg: {"cpu": cfg.size.resources.cpus, "gpu": cfg.size.resources.gpus},
    check=checks.check_local, ray_init=lambda trials: {},
    max_concurrent=lambda cfg, trials: cfg.grid.max_concurrent)

VERL = Backend(
    name="verl", description="verl 0.9.1 main_ppo: vLLM/SGLang on GPUs, or its real trainer on the CPU",
    run=_lazy("core.backends.verl_trial", "run"), resources=_lazy("core.backends.verl", "resources"),
    check=checks.check_verl, ray_init=_lazy("core.backends.verl", "ray_init"),
    max_concurrent=_lazy("core.backends.verl", "max_concurrent"),
    finalize=_lazy("core.backends.verl", "finalize"), dry_run=_lazy("core.backends.verl", "dry_run"))

BACKENDS: dict[str, Backend] = {b.name: b for b in (LOCAL, VERL)}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        from core.errors import ConfigError
        raise ConfigError("backend", name, allowed=list(BACKENDS))
    return BACKENDS[name]
