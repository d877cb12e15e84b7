"""The ``scaling`` section: pass@1 and pass@k against steps and compute per group of trials
(seeds pooled), laws fitted per group and across the grid's axis, RL gains with intervals.

Per group (trials that differ only in their seed):

- ScaleRL's sigmoid on pass@1 vs cumulative RL FLOPs, R0 fixed at the step-0 pass@1 (shown
  as fixed), with a held-out check: the same fit without the last evaluation, its error there;
- Tan et al.'s power law log(1 - pass@1) = -k log C + E on the same points;
- a saturating exponential on pass@1 vs step (y0 fixed likewise) and the steps to 90% of its
  asymptote (tau ln 10);
- the RL gain (last eval - step 0) with a 90% interval over eval prompts and seeds, from the
  per-prompt pass@1 each trial logged (``evals/step_<n>.json`` artifacts);
- where the grid has ``rl.algorithm`` controls (``sft``: SFT continued for the same steps
  from the same base), RL's gain over its control, paired over seeds and prompts.

Across the grid's axis (numbers only, per series of the other axes, RL trials only): the
ceilings A and the gains against the axis as a power law a x^b, and for model sizes Tan et
al.'s k(N) = K_max / (1 + N0 / N), all with ``core.fit.across_sizes`` (uncertainty carried
from each group's bootstrap draws). Every fit goes through ``core.fit.estimate``'s rules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from core.fit import (Assessment, Holdout, Interval, Quantity, across_sizes, estimate, holdout,
                      steps_to_fraction)
from core.fit.bootstrap import fmt
from core.report.runs import GridView, algorithm, group_runs, has_evals, matrix, seed
from core.report.stats import Gain, paired_gain

N_BOOT = 200


@dataclass(frozen=True, eq=False)
class Group:
    name: str
    label: str                       # legend text: "m (N = 4.5e6)", "data.d_rl=256"
    x: float | str | None            # position on the grid's axis
    series: str                      # values of the grid's other axes ("" if none)
    algorithm: str                   # grpo, or sft for a matched control
    runs: list
    steps: np.ndarray
    pass1: np.ndarray                # [run, step], nan where a run lacks the step
    flops: np.ndarray                # [step], cumulative RL FLOPs, mean over seeds
    sigmoid: Assessment              # pass@1 vs FLOPs (ScaleRL), R0 fixed
    sigmoid_held: Holdout | None
    power: Assessment                # pass@1 vs FLOPs (Tan et al.)
    satexp: Assessment               # pass@1 vs step, y0 fixed
    satexp_held: Holdout | None
    t90: Quantity                    # steps to 90% of the saturating exponential's asymptote
    gain: Gain | None                # last eval - step 0, over prompts and seeds
    gain_note: str

    @property
    def seeds(self) -> int:
        return len(self.runs)

    @property
    def slug(self) -> str:
        return slug(self.name)


@dataclass(frozen=True, eq=False)
class Across:
    """One quantity of every group of a series against the grid's axis, and a law fitted."""
    quantity: str
    key: str                         # short name in metric keys: A_sigmoid, gain, k
    law: str
    series: str
    names: list
    xs: list
    quantities: list
    fit: Assessment


@dataclass(frozen=True, eq=False)
class Control:
    rl: str
    control: str
    step: int | None
    gain: Gain | None                # RL - control at the last common eval step
    note: str = ""


@dataclass(frozen=True, eq=False)
class Scaling:
    grid: GridView
    groups: list
    across: list
    controls: list
    skipped: list                    # names of runs with no evaluation

    def __bool__(self) -> bool:
        return bool(self.groups)


def slug(name: str) -> str:
    """A group name as MLflow accepts it in metric keys: ``model=m`` -> ``model_m``."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_") or "all"


def _not_fitted(law: str, reason: str) -> Assessment:
    return Assessment(law, None, {}, False, (reason,))


def _fit(law: str, x, y, fixed: dict | None, seed_: int) -> tuple[Assessment, Holdout | None]:
    """estimate() on the finite points; for an identified fit also the held-out check (the
    fit without the points at the largest x, and its error on them)."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    a = estimate(law, x, y, fixed=fixed, n_boot=N_BOOT, seed=seed_)
    held = None
    if a.identified and len(np.unique(x)) > 2:
        try:
            held = holdout(law, x, y, int(np.sum(x == x.max())), fixed=fixed, seed=seed_)
        except ValueError:          # too few points left to fit without the last x
            held = None
    return a, held


def _label(grid: GridView, name: str, run: dict) -> str:
    if grid.axis == "model":
        n = run["tags"].get("params_count")
        rest = name.split(", ", 1)[1:] if ", " in name else []
        size = f"{run['tags'].get('model_size', '?')} (N = {fmt(float(n))})" if n else name
        return ", ".join([size, *rest])
    return name


def analyse_group(grid: GridView, name: str, runs: list[dict]) -> Group:
    steps, pass1 = matrix(runs, "val/pass_at_1")
    fsteps, flops_runs = matrix(runs, "compute/flops_total")
    flops = np.full(len(steps), np.nan)
    for j, s in enumerate(steps):            # seeds at one step share one x (counted once)
        col = flops_runs[:, fsteps == s] if s in fsteps else np.empty((0, 0))
        if col.size and np.isfinite(col).any():
            flops[j] = np.nanmean(col)
    r0 = float(np.nanmean(pass1[:, 0])) if pass1.size else float("nan")
    fixed_r0 = {"R0": r0} if np.isfinite(r0) else None
    x_c, x_s, y = np.tile(flops, len(runs)), np.tile(steps, len(runs)), pass1.ravel()
    sig, sig_held = _fit("sigmoid", x_c, y, fixed_r0, 0)
    pos = x_c > 0
    power, _ = _fit("power", x_c[pos], y[pos], None, 0)
    sat, sat_held = _fit("saturating_exp", x_s, y, {"y0": r0} if fixed_r0 else None, 0)
    gain, note = _gain(runs)
    return Group(name=name, label=_label(grid, name, runs[0]), x=grid.x_of(runs[0]),
                 series=grid.series_of(runs[0]), algorithm=algorithm(runs[0]), runs=runs,
                 steps=steps, pass1=pass1, flops=flops, sigmoid=sig, sigmoid_held=sig_held,
                 power=power, satexp=sat, satexp_held=sat_held, t90=steps_to_fraction(sat),
                 gain=gain, gain_note=note)


def _gain(runs: list[dict]) -> tuple[Gain | None, str]:
    """Last eval - step 0 (the first and last eval steps every run has), paired by prompt
    within each trial, bootstrapped over prompts and seeds."""
    common = sorted(set.intersection(*(set(r["evals"]) for r in runs)))
    if not all(r["evals"] for r in runs):
        return None, "no per-prompt evaluations logged (evals/step_*.json artifacts)"
    if len(common) < 2:
        return None, "fewer than two evaluation steps common to every seed"
    first, last = common[0], common[-1]
    before = [r["evals"][first] for r in runs]
    after = [r["evals"][last] for r in runs]
    if len({len(v) for v in before + after}) != 1:
        return None, "the trials evaluated different numbers of prompts"
    note = f"step {first} to step {last}"
    return paired_gain(np.array(before), np.array(after)), note


# ------------------------------------------------------------------ controls

def _pair_key(name: str) -> str:
    return ", ".join(p for p in name.split(", ") if not p.startswith("rl.algorithm="))


def controls(groups: list[Group]) -> list[Control]:
    """RL groups and their matched SFT controls (the same axis values but ``rl.algorithm``)
    with RL's gain over the control at the last eval step both have, paired over seeds and
    prompts (same eval prompts: same dataset fingerprint)."""
    ctl = {_pair_key(g.name): g for g in groups if g.algorithm == "sft"}
    out = []
    for g in groups:
        c = ctl.get(_pair_key(g.name)) if g.algorithm != "sft" else None
        if c is not None:
            out.append(_control(g, c))
    return out


def _control(g: Group, c: Group) -> Control:
    by_seed = {seed(r): r for r in c.runs}
    pairs = [(r, by_seed[seed(r)]) for r in g.runs if seed(r) in by_seed]
    if not pairs:
        return Control(g.name, c.name, None, None, "no seed in common")
    if any(a["tags"].get("dataset_fingerprint") != b["tags"].get("dataset_fingerprint")
           for a, b in pairs):
        return Control(g.name, c.name, None, None, "different data selections: not paired")
    common = set.intersection(*(set(a["evals"]) & set(b["evals"]) for a, b in pairs))
    if not common:
        return Control(g.name, c.name, None, None, "no per-prompt evaluations at a common step")
    step = max(common)
    rl = [a["evals"][step] for a, _ in pairs]
    sft = [b["evals"][step] for _, b in pairs]
    if len({len(v) for v in rl + sft}) != 1:
        return Control(g.name, c.name, step, None, "different numbers of eval prompts")
    return Control(g.name, c.name, step, paired_gain(np.array(sft), np.array(rl)),
                   f"step {step}, {len(pairs)} seed pair(s)")


# ------------------------------------------------------------------ across the grid's axis

def param(a: Assessment, name: str) -> Quantity:
    """A fitted parameter as a Quantity; not identified (with the fit's reasons) if the fit
    is not, or was not made at all."""
    if name in a.intervals:
        return a.quantity(name)
    return Quantity(name, Interval(np.nan, np.nan, np.nan, 0.9), False, a.reasons)


def _gain_q(g: Group) -> Quantity:
    if g.gain is None:
        return Quantity("gain", Interval(np.nan, np.nan, np.nan, 0.9), False, (g.gain_note,))
    return g.gain.quantity("gain")


ACROSS = (  # (key, what, law, the group's quantity, model axis only)
    ("A_sigmoid", "ceiling A of pass@1 vs FLOPs (sigmoid)", "power_n",
     lambda g: param(g.sigmoid, "A"), False),
    ("A_satexp", "asymptote A of pass@1 vs step (sat. exp.)", "power_n",
     lambda g: param(g.satexp, "A"), False),
    ("gain", "RL gain in pass@1 (last eval - step 0)", "power_n", _gain_q, False),
    ("k", "Tan et al. exponent k of pass@1 vs FLOPs", "k_of_n",
     lambda g: param(g.power, "k"), True),
)


def across(grid: GridView, groups: list[Group]) -> list[Across]:
    rl = [g for g in groups if g.algorithm != "sft" and isinstance(g.x, float)]
    if len({g.x for g in rl}) < 2 or not grid.numeric([g.runs[0] for g in rl]):
        return []               # a law across the axis needs numbers, and more than one
    out = []
    for series in dict.fromkeys(g.series for g in rl):
        members = [g for g in rl if g.series == series]
        for key, what, law, get, model_only in ACROSS:
            if model_only and grid.axis != "model":
                continue
            xs, qs = [g.x for g in members], [get(g) for g in members]
            out.append(Across(what, key, law, series, [g.name for g in members], xs, qs,
                              _across_fit(law, grid, xs, qs)))
    return out


def _across_fit(law: str, grid: GridView, xs: list, qs: list[Quantity]) -> Assessment:
    if law == "power_n" and any(q.identified and q.estimate <= 0 for q in qs):
        return _not_fitted(law, "a power law a x^b needs positive values; "
                           + ", ".join(f"{grid.x_symbol} = {fmt(x)}: {fmt(q.estimate)}"
                                       for x, q in zip(xs, qs) if q.identified and q.estimate <= 0))
    return across_sizes(law, xs, qs, n_boot=N_BOOT, seed=0)


def analyse(runs: list[dict], grid: GridView) -> Scaling:
    evaluated = [r for r in runs if has_evals(r)]
    skipped = [r["name"] for r in runs if not has_evals(r)]
    groups = [analyse_group(grid, name, members)
              for name, members in group_runs(evaluated, grid).items()]
    return Scaling(grid, groups, across(grid, groups), controls(groups), skipped)
