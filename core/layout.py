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
    """A trial's folder name, from its axis values (``model=s_seed=0``)."""
    return "_".join(f"{k.replace('.', '-')}={v}" for k, v in values.items()) or "single"
