"""A report section: analyse / plots / html, and what it tells the parent run.

Each grid names its sections (``grid.report`` in its YAML); the report runs them in that
order, after any section a section ``needs`` (their results reach it as ``grid.results``).

    analyse(runs, grid) -> result       numbers only: fits, intervals, gains (no I/O, no plots)
    plots(result, out)  -> [(png, caption)]   figures written into the folder ``out``
    html(result)        -> str          the section's body (tables, findings, notes)
    metrics(result)     -> {name: float | str}  for the parent run: numbers become metrics,
                                        text becomes tags (params are immutable in MLflow and a
                                        report may be run again on a grown grid)
    tables(result)      -> {name: markdown}     for ``python -m core.report --table NAME``
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _none(_result) -> dict:
    return {}


def _no_plots(_result, _out: Path) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    analyse: Callable[[list[dict], Any], Any]
    html: Callable[[Any], str]
    plots: Callable[[Any, Path], list[tuple[str, str]]] = _no_plots
    metrics: Callable[[Any], dict[str, float | str]] = _none
    tables: Callable[[Any], dict[str, str]] = _none
    needs: tuple[str, ...] = ()
    # False: the section has nothing to say about these runs (its heading is left out)
    applies: Callable[[Any], bool] = bool
