"""Plugin manager: built-in plugins first, then third-party ones from entry points.

``python -m core.plugins list`` prints every registered plugin by kind with its source.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from dataclasses import dataclass
from typing import Any

import pluggy

from core import hookspecs
from core.errors import PluginError, UnknownPluginError
from core.specs import KINDS, SPEC_TYPES

# Built-in plugins: every module in these packages is registered, in this order.
BUILTIN_PACKAGES = ("plugins.rewards", "plugins.curricula", "plugins.datasets",
                    "plugins.environments")
BUILTIN = "built-in"


@dataclass(frozen=True)
class Entry:
    spec: Any
    plugin: str   # the registering plugin's name (module path or entry-point name)
    source: str   # "built-in" or "<distribution> <version>"


class Registry:
    """All specs by kind and name, built once from a plugin manager."""

    def __init__(self, entries: dict[str, dict[str, Entry]]) -> None:
        self._entries = entries

    def names(self, kind: str) -> list[str]:
        return list(self._check_kind(kind))

    def entries(self, kind: str) -> list[Entry]:
        return list(self._check_kind(kind).values())

    def get(self, kind: str, name: str) -> Any:
        by_name = self._check_kind(kind)
        if name not in by_name:
            raise UnknownPluginError(kind, name, by_name)
        return by_name[name].spec

    def _check_kind(self, kind: str) -> dict[str, Entry]:
        if kind not in self._entries:
            raise PluginError(f"unknown plugin kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        return self._entries[kind]


def make_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A manager with the hookspecs, the built-in plugins and (optionally) entry points."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for package in BUILTIN_PACKAGES:
        for module in _iter_modules(package):
            pm.register(module, name=module.__name__)
    if load_entry_points:
        try:
            pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party package must say which one it is
            raise PluginError(f"failed to load a plugin from entry-point group "
                              f"{hookspecs.ENTRY_POINT_GROUP!r}: {exc!r}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc
    return pm


def _iter_modules(package_name: str):
    try:
        package = importlib.import_module(package_name)
    except ModuleNotFoundError:
        return
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package_name}.{info.name}")


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every implementation of every hook and index the specs by name.

    Implementations are called one by one (not through ``pm.hook``) so that each record is
    attributed to the plugin that yielded it: a duplicate name is reported with every
    provider, and ``list`` can say where each plugin comes from.
    """
    dists = {id(plugin): f"{dist.project_name} {dist.version}"
             for plugin, dist in pm.list_plugin_distinfo()}
    entries: dict[str, dict[str, Entry]] = {}
    for kind in KINDS:
        hook = getattr(pm.hook, f"agentic_rl_{kind}")
        found: dict[str, list[Entry]] = {}
        for impl in hook.get_hookimpls():   # in registration order: built-ins first
            source = dists.get(id(impl.plugin), BUILTIN)
            for spec in impl.function() or ():
                if not isinstance(spec, SPEC_TYPES[kind]):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} ({source}) yielded {type(spec).__name__} "
                        f"from agentic_rl_{kind}; expected {SPEC_TYPES[kind].__name__}")
                found.setdefault(spec.name, []).append(Entry(spec, impl.plugin_name, source))
        dupes = {n: es for n, es in found.items() if len(es) > 1}
        if dupes:
            lines = [f"{kind} plugin {name!r} is provided by " +
                     " and ".join(f"{e.plugin} ({e.source})" for e in es)
                     for name, es in dupes.items()]
            raise PluginError("duplicate plugin names: " + "; ".join(lines) +
                              "; rename one or uninstall a provider")
        entries[kind] = {name: es[0] for name, es in found.items()}
    return Registry(entries)


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry (built-ins plus installed entry points)."""
    return build_registry(make_manager())


def format_listing(reg: Registry) -> str:
    lines = []
    for kind in KINDS:
        entries = reg.entries(kind)
        lines.append(f"{kind} ({len(entries)}):")
        if not entries:
            lines.append("  (none)")
        width = max((len(e.spec.name) for e in entries), default=0)
        for e in entries:
            extra = ""
            if kind == "rewards":
                extra = f" [{e.spec.kind}]"
            elif kind == "datasets":
                extra = f" [domains: {', '.join(e.spec.domains)}; splits: {', '.join(e.spec.splits)}]"
            lines.append(f"  {e.spec.name:<{width}}  {e.source:<12} {e.spec.description}{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["list"] or len(argv) > 1:
        print("usage: python -m core.plugins list", file=sys.stderr)
        return 2
    try:
        print(format_listing(registry()))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
