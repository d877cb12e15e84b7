"""verl 0.9.1 on a machine without a GPU: its real ``main_ppo`` through its own extension points.

verl upstream does not train without an accelerator (verl-project/verl#3266). Its registries are
enough to make it: this package is named in ``VERL_USE_EXTERNAL_MODULES``, which ``import verl``
imports in every process (the driver, the task runner, every Ray worker), and there it

1. registers a ``cpu`` platform with ``PlatformRegistry`` (selected by ``VERL_PLATFORM=cpu``;
   without it verl falls back to "nvidia" and asks CUDA for everything). Its Ray resource
   is still ``GPU``: verl's resource pools always book the platform's accelerator resource, so
   the Ray cluster is given logical GPUs (one per trainer process) to satisfy the bookkeeping;
2. makes the default process group ``cpu:gloo`` (verl writes ``cpu:gloo,{device}:{backend}``,
   which on a cpu platform names the cpu twice and torch rejects it);
3. registers the FSDP engines for the ``cpu`` device (verl registers them for cuda and npu
   only; FSDP2 runs on the CPU, FSDP1 hard-codes ``sync_module_states`` and needs a GPU);
4. registers an ``hf`` rollout (``hf_rollout.py``: a Ray actor serving transformers'
   ``generate`` with token ids and log-probs, an adapter in the trainer worker that pushes
   the trained weights to it at every sync, and a ``RolloutReplica`` tying them), through
   ``RolloutReplicaRegistry`` and verl's rollout-class table.

``core.backends.verl.cpu_overrides`` composes the matching config (``VERL_PLATFORM``, logical
GPUs, ``strategy=fsdp2``, ``attn_implementation=sdpa``, ``rollout.name=hf``); users never type
it. ``check_interfaces()`` is the canary: it fails loudly, naming the interface, when a verl
upgrade moves one of the things this package relies on (a test runs it).
"""
from __future__ import annotations

import inspect
import os
from contextlib import contextmanager

VERL_VERSION = "0.9.1"
PLATFORM = "cpu"
MODULE = __name__


class VerlInterfaceChanged(RuntimeError):
    """A verl interface this package relies on moved (a verl upgrade): the message names it."""


class _CPUDeviceModule:
    """``torch.cpu`` with the memory, RNG and property calls verl makes on a device module
    (``torch.cuda``-style); memory counters read 0 and cache calls do nothing on the CPU."""

    def __getattr__(self, name):
        import torch
        return getattr(torch.cpu, name)

    def is_available(self) -> bool:
        return True

    def memory_reserved(self, device=None) -> int:
        return 0

    memory_allocated = max_memory_reserved = max_memory_allocated = memory_reserved

    def mem_get_info(self, device=None) -> tuple[int, int]:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page

    def empty_cache(self) -> None:
        return None

    ipc_collect = reset_peak_memory_stats = empty_cache

    def get_rng_state(self, device=None):
        import torch
        return torch.get_rng_state()

    def set_rng_state(self, state, device=None) -> None:
        import torch
        torch.set_rng_state(state)

    def get_device_name(self, device=None) -> str:
        return "cpu"

    def get_device_properties(self, device=None):
        from types import SimpleNamespace
        return SimpleNamespace(name="cpu", total_memory=self.mem_get_info()[1])


class _CPUPlatform:
    """A CPU "device" (verl's ``PlatformBase`` interface): torch.cpu, gloo, no IPC; Ray books it
    as a logical GPU. Mixed into verl's ``PlatformBase`` by ``_platform_class``."""

    device_name = "cpu"
    vendor_name = "cpu"

    @property
    def device_module(self):
        return _CPUDeviceModule()

    def is_available(self) -> bool:
        return True

    def current_device(self):
        return "cpu"    # callers do tensor.to(get_device_id()); an int would mean cuda:N

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        import torch
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        import torch
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None


def _platform_class():
    from verl.plugin.platform import PlatformBase
    return type("PlatformCPU", (_CPUPlatform, PlatformBase), {"__module__": __name__})


def _gloo_process_group() -> None:
    """verl builds ``cpu:gloo,{device}:{backend}``; on the cpu platform the default group is
    plain ``cpu:gloo`` (torch rejects a device named twice)."""
    import verl.utils.distributed as dist
    original = dist.initialize_global_process_group_ray
    if getattr(original, "_arl_cpu", False):
        return

    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    initialize_global_process_group_ray._arl_cpu = True
    initialize_global_process_group_ray._arl_original = original
    dist.initialize_global_process_group_ray = initialize_global_process_group_ray


def _fsdp_engines() -> None:
    """verl registers its FSDP engines for cuda and npu; register the same classes for cpu."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl as fsdp
    for model_type, cls in (("language_model", fsdp.FSDPEngineWithLMHead),
                            ("value_model", fsdp.FSDPEngineWithValueHead)):
        if PLATFORM not in EngineRegistry._engines.get(model_type, {}).get("fsdp2", {}):
            EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"],
                                    device=PLATFORM)(cls)


def register() -> None:
    """Everything verl needs to run on the CPU, in the current process (idempotent)."""
    from verl.plugin.platform import PlatformRegistry
    if PlatformRegistry.get(PLATFORM) is None:
        PlatformRegistry.register(platform=PLATFORM)(_platform_class())
    if os.environ.get("VERL_PLATFORM", "").strip().lower() != PLATFORM:
        return    # imported on a GPU machine: leave verl alone
    _gloo_process_group()
    _fsdp_engines()
    from core.backends.verl_cpu import hf_rollout
    hf_rollout.register()


def check_interfaces() -> None:
    """Fail loudly, naming the interface, if a verl upgrade moved what this package uses."""
    import verl
    problems = []
    if verl.__version__ != VERL_VERSION:
        problems.append(f"verl {verl.__version__} is installed; this adapter was written for {VERL_VERSION}")

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    from verl.plugin.platform import PlatformBase, PlatformRegistry, platform_manager
    need(hasattr(PlatformRegistry, "register"), "verl.plugin.platform.PlatformRegistry.register")
    need("VERL_PLATFORM" in inspect.getsource(platform_manager._detect_platform_name),
         "VERL_PLATFORM override in verl.plugin.platform.platform_manager._detect_platform_name")
    abstract = set(getattr(PlatformBase, "__abstractmethods__", ()))
    missing = abstract - set(dir(_platform_class()))
    need(not missing, f"PlatformBase abstract methods not implemented: {sorted(missing)}")
    need("VERL_USE_EXTERNAL_MODULES" in inspect.getsource(verl),
         "VERL_USE_EXTERNAL_MODULES import hook in verl/__init__.py")
    import verl.utils.distributed as dist
    fn = dist.initialize_global_process_group_ray
    src = inspect.getsource(getattr(fn, "_arl_original", fn))
    need("cpu:gloo," in src and "backend=None" in src.replace(" ", ""),
         "verl.utils.distributed.initialize_global_process_group_ray(timeout_second, backend) "
         "building 'cpu:gloo,{device}:{backend}'")
    from verl.workers.engine.base import EngineRegistry
    need(hasattr(EngineRegistry, "register") and hasattr(EngineRegistry, "_engines"),
         "verl.workers.engine.base.EngineRegistry.register / _engines")
    from verl.workers.engine.fsdp import transformer_impl as fsdp
    need(hasattr(fsdp, "FSDPEngineWithLMHead") and hasattr(fsdp, "FSDPEngineWithValueHead"),
         "verl.workers.engine.fsdp.transformer_impl.FSDPEngineWithLMHead / FSDPEngineWithValueHead")
    from core.backends import verl_tq
    from core.backends.verl_cpu import hf_rollout
    problems += hf_rollout.check_interfaces() + verl_tq.check_interfaces()
    if problems:
        raise VerlInterfaceChanged("verl-on-CPU adapter (core/backends/verl_cpu) no longer matches "
                                   "verl: " + "; ".join(problems))


register()
