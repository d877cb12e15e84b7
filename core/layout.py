"""Where a grid's files live: ``<output_dir>/<grid>/<stamp>/`` with ``grid.json`` (the MLflow
parent run and store), ``trials/<trial key>/`` (one folder per trial), ``tune/`` (Ray Tune's
experiment state) and ``report/``. The grid driver, the verl dry run and the report share it.
"""
from __future__ import annotations

import time
from pathlib import Path


def run_dir(cfg) -> Path:
    """The run folder of this invocation: a new stamp, or with ``resume=true`` the newest run
    of the grid."""
    root = Path(cfg.output_dir).resolve() / cfg.grid.name
    if cfg.resume:
        previous = sorted(p for p in root.glob("*") if (p / "grid.json").exists())
        if previous:
            return previous[-1]
        print(f"resume=true but no earlier run under {root}; starting a new one")
    return root / time.strftime("%Y%m%d-%H%M%S")


def trial_key(values: dict) -> str:
    """A trial's folder name, from its axis values (``model=s_seed=0``); a mapping value (a
    whole config section as an axis) is written as its ``name`` and a short hash, a list as its
    items joined by ``+``."""
    def label(v) -> str:
        if isinstance(v, dict):
            import hashlib
            import json
            digest = hashlib.sha1(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:6]
            return f"{v.get('name', 'map')}-{digest}"
        if isinstance(v, (list, tuple)):      # a list axis (data.domains=[arith]): arith, arith+rev
            return "+".join(map(str, v))
        return str(v)
    return "_".join(f"{k.replace('.', '-')}={label(v)}" for k, v in values.items()) or "single"
