"""User-facing errors. Each carries one message that names what was wrong and what is allowed;
the command-line entry points print it and exit non-zero without a traceback."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _fmt_allowed(allowed: Iterable[Any]) -> str:
    return ", ".join(str(a) for a in allowed)


class UserError(Exception):
    """An error caused by input (config, plugin set-up), reported as one message."""

    exit_code = 2


class ConfigError(UserError):
    """A config value is wrong. ``key`` is the dotted path, ``value`` what was given."""

    def __init__(self, key: str, value: Any, expected: str | None = None,
                 allowed: Iterable[Any] | None = None) -> None:
        self.key, self.value = key, value
        self.allowed = list(allowed) if allowed is not None else None
        msg = f"config error at `{key}`: got {value!r}"
        if expected:
            msg += f"; {expected}"
        if self.allowed is not None:
            msg += f"; allowed: {_fmt_allowed(self.allowed)}"
        super().__init__(msg)


class PluginError(UserError):
    """A plugin is missing, duplicated or broken."""


class UnknownPluginError(PluginError):
    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} plugin {name!r}; valid names: "
                         f"{_fmt_allowed(self.valid) or '(none registered)'}")
