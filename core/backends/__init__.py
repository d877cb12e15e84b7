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


def _local_run(cfg, workdir, resume=None, log=print):
    from core.backends import local
    return local.run(cfg, workdir, resume=resume, log=log)


def _local_check(cfg) -> None:
    from core.errors import ConfigError
    if cfg.device == "gpu":
        raise ConfigError("device", cfg.device, "the local backend trains on the CPU; use "
                          "backend=verl for GPUs", allowed=["auto", "cpu"])


LOCAL = Backend(
    name="local", description="embedded GRPO trainer (HF generate + torch), CPU",
    run=_local_run,
    resources=lambda cfg: {"cpu": cfg.size.resources.cpus, "gpu": cfg.size.resources.gpus},
    check=_local_check, ray_init=lambda trials: {},
    max_concurrent=lambda cfg, trials: cfg.grid.max_concurrent)


def _verl(attr: str):
    def call(*args, **kwargs):
        from core.backends import verl
        return getattr(verl, attr)(*args, **kwargs)
    return call


VERL = Backend(
    name="verl", description="verl 0.9.1 main_ppo: vLLM/SGLang on GPUs, or its real trainer on the CPU",
    run=_verl("run"), resources=_verl("resources"), check=_verl("check"),
    ray_init=_verl("ray_init"), max_concurrent=_verl("max_concurrent"), finalize=_verl("finalize"),
    dry_run=_verl("dry_run"))

BACKENDS: dict[str, Backend] = {b.name: b for b in (LOCAL, VERL)}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        from core.errors import ConfigError
        raise ConfigError("backend", name, allowed=list(BACKENDS))
    return BACKENDS[name]
