"""Hydra's override grammar and dotted keys, shared by the config and the verl backend."""
from __future__ import annotations

import re
from typing import Any


def hydra_value(v: Any) -> str:
    """A value in Hydra's override grammar (lists, null, booleans, quoted strings)."""
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{hydra_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str) and re.search(r"[=,\[\]{}()'\" :$\\]", v):   # Hydra's quoted string
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(v)


def flatten_keys(tree: dict, prefix: str = "") -> dict:
    """Nested maps as dotted keys: ``{"rl": {"lr": [..]}}`` -> ``{"rl.lr": [..]}``. Grid axes
    use it (``grid.axes.rl.lr=[..]`` nests, YAML may write ``rl.lr: [..]``: both mean the
    axis ``rl.lr``), and so do verl passthrough keys."""
    flat = {}
    for key, values in tree.items():
        if isinstance(values, dict):
            flat.update(flatten_keys(values, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = values
    return flat
