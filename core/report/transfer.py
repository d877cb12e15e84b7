"""The ``transfer`` section: what RL on one domain does to every domain (issue 17).

For grids whose trials train on a source domain (``data.domains``, one domain or a mix) and
are evaluated on every domain (``data.eval_domains``; each trial logs ``val/<domain>/pass_at_1``
and, per eval step, every prompt's pass@1 and domain in ``evals/step_<n>.json``):

- the transfer matrix per setting (model size, and any other axis) at each D_RL: the gain in
  pass@1 on each target domain from step 0 (the base) to the last eval, with a 90% interval
  over that domain's eval prompts and the seeds (``core.report.stats.paired_gain``);
- the gain on each target against D_RL with a saturating law gain(D) = A (1 - exp(-D / tau))
  (``saturating_exp`` with y0 fixed at 0: no RL data, no gain), fitted by ``core.fit.estimate``
  and its identification rules: a fit that is not identified is data only, with its reasons;
- the minimal D_RL: the smallest rung of the grid's D_RL ladder whose gain interval lies above
  zero, as the bracket (previous rung, rung], or "not reached";
- whether larger models need less data: the minimal D_RL of each pair compared across sizes.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from core.fit import Assessment, estimate
from core.report.runs import GridView, algorithm, axis_value, seed
from core.report.stats import Gain, paired_gain

SOURCE = "data.domains"
D_RL = "data.d_rl"
NOT_SETTING = (SOURCE, D_RL, "seed", "rl.algorithm")
N_BOOT = 200                         # bootstrap draws of each saturating fit
GAIN_BOOT = 2000                     # bootstrap draws of each cell's gain interval


@dataclass(frozen=True, eq=False)
class Cell:
    """One (setting, source, D_RL, target): the gain on the target with its interval."""
    setting: str
    source: str
    d_rl: float | None
    target: str
    seeds: int
    estimate: float                  # mean over seeds of (last eval - step 0) on the target
    gain: Gain | None                # with a 90% interval; None: no per-prompt evals by domain
    per_seed: tuple[float, ...]      # the point gain of each seed's trial
    note: str = ""

    @property
    def in_domain(self) -> bool:
        return self.target in self.source.split("+")

    def text(self) -> str:
        if self.gain is not None:
            return f"{self.gain}" + ("" if self.gain.inside_noise else " *")
        return f"{self.estimate:+.3f} (no interval: {self.note})"


@dataclass(frozen=True, eq=False)
class Curve:
    """Gain on one target against D_RL for one (setting, source), with the saturating fit and
    the minimal D_RL whose interval excludes zero."""
    setting: str
    source: str
    target: str
    cells: list                      # by D_RL, ascending
    fit: Assessment
    minimal: str                     # "(32, 128]", "<= 32", "not reached (up to 512)"
    minimal_d: float | None          # the rung reached (None: not reached)


@dataclass(frozen=True, eq=False)
class Transfer:
    grid: GridView
    settings: list                   # e.g. ["model=xs", "model=s"], smallest model first
    sources: list
    targets: list
    d_rls: list                      # ascending (empty: D_RL is not an axis)
    cells: list
    curves: list
    size_note: str                   # do larger models need less data? one sentence

    def __bool__(self) -> bool:
        return bool(self.cells)

    def cell(self, setting: str, source: str, d_rl, target: str) -> Cell | None:
        return next((c for c in self.cells if (c.setting, c.source, c.d_rl, c.target)
                     == (setting, source, d_rl, target)), None)


def source_of(run: dict) -> str | None:
    """The trial's RL domains as ``arith`` or ``arith+mul`` (from its params or axis tag)."""
    raw = run["params"].get(SOURCE) or axis_value(run, SOURCE)
    return None if raw is None else joined(raw)


def joined(raw: str) -> str:
    """``["arith", "mul"]`` (JSON, as params hold it) or ``['arith']`` (as axis tags hold it)
    -> ``arith+mul`` / ``arith``."""
    import ast
    value = raw
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(raw)
            break
        except (TypeError, ValueError, SyntaxError):
            continue
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def targets_of(run: dict) -> list[str]:
    """The domains the trial was evaluated on: its per-prompt domains, else the
    ``val/<domain>/pass_at_1`` it logged (not the per-level ``val/level_<n>/...``)."""
    if run.get("eval_domains"):
        return sorted(set(run["eval_domains"]))
    return sorted({k.split("/")[1] for k in run["metrics"]
                   if k.startswith("val/") and k.count("/") == 2 and k.endswith("/pass_at_1")
                   and not re.fullmatch(r"level_\d+", k.split("/")[1])})


def _d_rl(run: dict) -> float | None:
    try:
        return float(axis_value(run, D_RL))
    except (TypeError, ValueError):
        return None


def _setting(grid: GridView, run: dict) -> str:
    keys = [a for a in grid.axes if a not in NOT_SETTING] or ["model"]
    return ", ".join(f"{a}={axis_value(run, a) if a != 'model' else run['tags'].get('model_size', axis_value(run, a))}"
                     for a in keys)


def _params(run: dict) -> float:
    try:
        return float(run["tags"].get("params_count") or "nan")
    except ValueError:
        return float("nan")


def _cell(setting: str, source: str, d_rl, target: str, runs: list[dict]) -> Cell:
    key = f"val/{target}/pass_at_1"
    per_seed = []
    for r in runs:
        h = r["metrics"].get(key, {})
        steps = sorted(h)
        per_seed.append(h[steps[-1]] - h[steps[0]] if len(steps) >= 2 else np.nan)
    with np.errstate(all="ignore"):
        est = float(np.nanmean(per_seed)) if per_seed else float("nan")
    gain, note = _interval(runs, target)
    if gain is not None:
        est = gain.estimate
    return Cell(setting, source, d_rl, target, len(runs), est, gain, tuple(per_seed), note)


def _interval(runs: list[dict], target: str) -> tuple[Gain | None, str]:
    """Last eval - step 0 on the target's eval prompts, paired by prompt, over prompts and
    seeds; None (and why) when the trials did not log per-prompt evals with their domains."""
    if not all(r.get("evals") and r.get("eval_domains") for r in runs):
        return None, "per-prompt evals by domain not logged"
    common = sorted(set.intersection(*(set(r["evals"]) for r in runs)))
    if len(common) < 2:
        return None, "fewer than two evaluation steps common to every seed"
    before, after = [], []
    for r in runs:
        idx = [i for i, d in enumerate(r["eval_domains"]) if d == target]
        b, a = np.asarray(r["evals"][common[0]], float), np.asarray(r["evals"][common[-1]], float)
        if not idx or len(b) != len(r["eval_domains"]) or len(a) != len(b):
            return None, "per-prompt evals do not match their domains"
        before.append(b[idx]), after.append(a[idx])
    if len({len(v) for v in before}) != 1:
        return None, "the seeds evaluated different numbers of prompts"
    return (paired_gain(np.array(before), np.array(after), n_boot=GAIN_BOOT),
            f"step {common[0]} to {common[-1]}")


def _minimal(cells: list[Cell]) -> tuple[str, float | None]:
    prev = None
    for c in cells:
        if c.gain is not None and c.gain.low > 0:
            lo = f"({prev:g}, {c.d_rl:g}]" if prev is not None else f"<= {c.d_rl:g}"
            return lo, c.d_rl
        prev = c.d_rl
    if any(c.gain is None for c in cells):
        return "n/a: no intervals", None
    return f"not reached (up to {cells[-1].d_rl:g})" if cells else "n/a", None


def _curve(setting: str, source: str, target: str, cells: list[Cell]) -> Curve:
    """The per-seed gains of every rung as the fit's points."""
    x = np.array([c.d_rl for c in cells for _ in c.per_seed], float)
    y = np.array([g for c in cells for g in c.per_seed], float)
    keep = np.isfinite(x) & np.isfinite(y)
    fit = estimate("saturating_exp", x[keep], y[keep], fixed={"y0": 0.0}, n_boot=N_BOOT, seed=0)
    minimal, d = _minimal(cells)
    return Curve(setting, source, target, cells, fit, minimal, d)


def _size_note(curves: list[Curve], settings: list[str]) -> str:
    """Per (source, target) off the diagonal, the minimal D_RL of the smallest and the largest
    setting compared."""
    if len(settings) < 2:
        return ""
    small, large = settings[0], settings[-1]
    less = same = more = only_large = only_small = neither = 0
    for c in curves:
        if c.setting != small or c.target in c.source.split("+"):
            continue
        other = next((o for o in curves if (o.setting, o.source, o.target)
                      == (large, c.source, c.target)), None)
        if other is None:
            continue
        a, b = c.minimal_d, other.minimal_d
        if a is None and b is None:
            neither += 1
        elif a is None:
            only_large += 1
        elif b is None:
            only_small += 1
        else:
            less, same, more = less + (b < a), same + (b == a), more + (b > a)
    total = less + same + more + only_large + only_small + neither
    if not total:
        return ""
    return (f"Across {total} source -> other-domain pairs, {large} vs {small}: transfer (gain "
            f"interval above 0) reached by both in {less + same + more} (the larger with less "
            f"D_RL in {less}, the same in {same}, more in {more}), by {large} only in "
            f"{only_large}, by {small} only in {only_small}, by neither in {neither}.")


def analyse(runs: list[dict], grid: GridView) -> Transfer:
    rl = [r for r in runs if algorithm(r) == "grpo" and source_of(r) and len(targets_of(r)) >= 2
          and len(r["metrics"].get("val/pass_at_1", {})) >= 2]     # a gain needs two evals
    empty = Transfer(grid, [], [], [], [], [], [], "")
    if not rl:
        return empty
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(rl, key=lambda r: (_params(r), _setting(grid, r), seed(r))):
        groups.setdefault((_setting(grid, r), source_of(r), _d_rl(r)), []).append(r)
    settings = list(dict.fromkeys(k[0] for k in groups))
    declared = [joined(v) for v in grid.values.get(SOURCE, ())]
    found = list(dict.fromkeys(k[1] for k in groups))
    sources = [s for s in declared if s in found] + [s for s in found if s not in declared]
    targets = sorted(set().union(*(targets_of(r) for r in rl)))
    d_rls = sorted({k[2] for k in groups if k[2] is not None})
    cells = []
    for (setting, source, d), members in groups.items():
        cells += [_cell(setting, source, d, t, members) for t in targets]
    curves = []
    for setting in settings:
        for source in sources:
            for t in targets:
                row = sorted((c for c in cells if (c.setting, c.source, c.target) == (setting, source, t)
                              and c.d_rl is not None), key=lambda c: c.d_rl)
                if row:
                    curves.append(_curve(setting, source, t, row))
    return Transfer(grid, settings, sources, targets, d_rls, cells, curves,
                    _size_note(curves, settings))
