"""One TransferQueue per verl run, so that grid trials can share a Ray cluster.

verl 0.9.1's V1 trainer moves every batch through TransferQueue, whose controller (and Ray
object-ref storage) are named actors in the fixed, cluster-wide Ray namespace
``"transfer_queue"``: the second verl run on a cluster attaches to the first run's controller
instead of starting its own, and when the first run ends the second one times out
("Data status update failed"). Measured here with two concurrent trials of one grid.

``import verl`` imports this module in every process of a run (``VERL_USE_EXTERNAL_MODULES``),
GPU and CPU alike; it rewrites that namespace to ``transfer_queue_<Ray job id>``. Every process
of one ``main_ppo`` run belongs to the run's Ray job, so a run's processes still find their
own controller, and no two runs share one. ``check_interfaces`` (the verl canary test) fails,
naming the call, if TransferQueue stops using the literal namespace.
"""
from __future__ import annotations

import inspect

SHARED = "transfer_queue"


def run_namespace() -> str:
    import ray
    return f"{SHARED}_{ray.get_runtime_context().get_job_id()}"


def _ns(kwargs: dict) -> dict:
    if kwargs.get("namespace") == SHARED:
        kwargs = {**kwargs, "namespace": run_namespace()}
    return kwargs


class _Ray:
    """The ``ray`` module as a TransferQueue module sees it: ``get_actor`` per run."""

    def __init__(self, ray) -> None:
        self._ray = ray

    def get_actor(self, name, namespace=None, **kw):
        return self._ray.get_actor(name, **_ns({"namespace": namespace, **kw}))

    def __getattr__(self, name):
        return getattr(self._ray, name)


class _Actor:
    """A TransferQueue actor class whose ``options(name=, namespace=)`` names it per run."""

    def __init__(self, cls) -> None:
        self._cls = cls

    def options(self, **kw):
        return self._cls.options(**_ns(kw))

    def __getattr__(self, name):
        return getattr(self._cls, name)


# module -> the actor classes it creates by name in the shared namespace
PATCHED = {"transfer_queue.interface": ("TransferQueueController",),
           "transfer_queue.storage.clients.ray_storage_client": ("RayObjectRefStorage",)}


def install() -> None:
    import importlib
    for module_name, classes in PATCHED.items():
        module = importlib.import_module(module_name)
        if isinstance(module.ray, _Ray):
            continue
        module.ray = _Ray(module.ray)
        for cls in classes:
            setattr(module, cls, _Actor(getattr(module, cls)))


def check_interfaces() -> list[str]:
    """What this module relies on in TransferQueue; each missing piece is named."""
    import importlib
    problems = []
    for module_name, classes in PATCHED.items():
        module = importlib.import_module(module_name)
        src = inspect.getsource(module)
        if f'namespace="{SHARED}"' not in src:
            problems.append(f"{module_name} no longer names its actors in namespace {SHARED!r}")
        for cls in classes:
            if not hasattr(module, cls):
                problems.append(f"{module_name}.{cls}")
    return problems


try:
    install()
except ModuleNotFoundError:   # TransferQueue not installed: verl's V1 trainer cannot run anyway
    pass
