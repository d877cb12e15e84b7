"""The ``curriculum`` section: curricula compared at equal RL compute (issue 15).

Trials are grouped by curriculum and the grid's other axes (model size), seeds pooled. Per
group, from the metric histories alone:

- pass@1 and pass@k_max against cumulative RL FLOPs (``compute/flops_total``, which counts
  every refill round ``online_filter`` rolls out) and per difficulty level against step
  (``val/level_<L>/pass_at_1``, logged by the trainer for graded prompts);
- ScaleRL's sigmoid R0 + (A - R0) / (1 + (C_mid / C)^B) on pass@1 vs FLOPs, R0 fixed at the
  step-0 pass@1 (the curricula of one size share the SFT base), with 90% bootstrap
  intervals, and the compute to 90% of the gain to A (``core.fit.compute_to_fraction``);
- B with A shared across the curricula of one size, as ScaleRL compares efficiencies: A from
  one sigmoid fitted to every curriculum's points of that size, then each curriculum's B
  and C_mid with A fixed there (its interval is conditional on the shared A);
- the last evaluation's pass@1 against ``mixed`` (same size), each group's seeds resampled
  and eval prompts paired (``core.report.stats.group_difference``), and the seed spread;
- what filtering spent: ``train/filtered_groups`` and ``train/extra_prompts`` summed over
  steps, and the rollout FLOPs of the extra prompts (each step's ``compute/flops_rollout``
  increment times the share of that step's served prompts not trained on).

Every fit goes through ``core.fit.estimate``'s identification rules: one that is not
identified is reported with its reasons and never drawn (``core.report.draw``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.fit import Assessment, Quantity, compute_to_fraction, estimate
from core.report.runs import GridView, axis_value, group_runs, has_evals, ks_logged, matrix
from core.report.scaling import param
from core.report.stats import Gain, group_difference, quantity_difference

AXES = ("curriculum.name", "curriculum")   # a name axis, or whole {name, options} entries
BASELINE = "mixed"
N_BOOT = 200


@dataclass(frozen=True, eq=False)
class Filtering:
    steps: int                       # RL steps that logged filtering counts
    filtered_groups: float           # groups dropped (all rewards equal), summed over steps
    extra_prompts: float             # prompts rolled out but not trained on
    served_prompts: float
    extra_flops: float               # rollout FLOPs of the extra prompts
    total_flops: float               # compute/flops_total at the trial's last step


@dataclass(frozen=True, eq=False)
class Group:
    name: str
    curriculum: str
    series: str                      # the other axes' values ("model=xs"), "" if none
    runs: list
    steps: np.ndarray                # eval steps
    flops: np.ndarray                # [run, step] cumulative RL FLOPs at each eval step
    pass1: np.ndarray                # [run, step]
    passk: np.ndarray                # [run, step] pass@k_max
    k_max: int
    levels: dict                     # level -> (eval steps, [run, step] pass@1)
    sigmoid: Assessment              # A, B, C_mid free; R0 fixed
    c90: Quantity                    # FLOPs to 90% of the gain from R0 to A
    shared: Assessment | None        # B, C_mid free; A (shared) and R0 fixed
    vs_mixed: Gain | None            # last-eval pass@1 minus mixed's (same series)
    filtering: list                  # Filtering per run (only runs that filter)

    @property
    def last(self) -> np.ndarray:
        """Each run's pass@1 at its own last evaluation (runs stop at equal FLOPs, so at
        different steps when one curriculum spends more per step)."""
        return np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan
                         for row in self.pass1])


@dataclass(frozen=True, eq=False)
class Series:
    """The curricula of one model size: the shared ceiling and the two answers."""
    name: str
    shared_a: Assessment             # one sigmoid over every curriculum's points
    groups: list


@dataclass(frozen=True, eq=False)
class Curricula:
    grid: GridView
    groups: list
    series: list
    skipped: list

    def __bool__(self) -> bool:
        return bool(self.groups)


def _curriculum(run: dict) -> str:
    return run["params"].get("curriculum.name") or axis_value(run, "curriculum.name") or "?"


def _series(grid: GridView, run: dict) -> str:
    keys = [a for a in grid.axes if a != "seed" and a != "rl.algorithm"
            and not a.startswith("curriculum")]
    return ", ".join(f"{a}={axis_value(run, a)}" for a in keys)


def _groups(runs: list[dict], grid: GridView) -> dict[tuple[str, str], list[dict]]:
    """Runs by (series, curriculum), seeds pooled, in the grid's order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for members in group_runs(runs, grid).values():
        for r in members:
            out.setdefault((_series(grid, r), _curriculum(r)), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: kv[0][0]))   # stable: grid order within


def _at_evals(run: dict, key: str, steps: np.ndarray) -> np.ndarray:
    """``key``'s value at each eval step; a FLOPs counter logged at other steps only takes
    the last value logged at or before the step."""
    hist = run["metrics"].get(key, {})
    out = np.full(len(steps), np.nan)
    logged = sorted(hist)
    for j, s in enumerate(steps):
        before = [t for t in logged if t <= s]
        if before:
            out[j] = hist[before[-1]]
    return out


def filtering(run: dict) -> Filtering | None:
    """What a filtering curriculum spent (None for a run that logged no filtering)."""
    m = run["metrics"]
    if not m.get("train/filtered_groups"):
        return None
    served, extra = m.get("train/served_prompts", {}), m.get("train/extra_prompts", {})
    roll = m.get("compute/flops_rollout", {})
    spent, prev = 0.0, 0.0
    for s in sorted(roll):
        inc, prev = roll[s] - prev, roll[s]
        if served.get(s):
            spent += inc * extra.get(s, 0.0) / served[s]
    total = m.get("compute/flops_total", {})
    return Filtering(len(m["train/filtered_groups"]), float(sum(m["train/filtered_groups"].values())),
                     float(sum(extra.values())), float(sum(served.values())), spent,
                     float(total[max(total)]) if total else float("nan"))


def _points(flops: np.ndarray, pass1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.ravel(flops), np.ravel(pass1)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _xy(groups: list[Group]) -> tuple[np.ndarray, np.ndarray]:
    if not groups:
        return np.empty(0), np.empty(0)
    return _points(np.concatenate([g.flops.ravel() for g in groups]),
                   np.concatenate([g.pass1.ravel() for g in groups]))


def _r0(pass1: np.ndarray) -> dict | None:
    if not pass1.size:
        return None
    with np.errstate(all="ignore"):
        r0 = float(np.nanmean(pass1[:, 0]))
    return {"R0": r0} if np.isfinite(r0) else None


def build_group(name: str, runs: list[dict], series: str) -> Group:
    steps, pass1 = matrix(runs, "val/pass_at_1")
    k_max = max(ks_logged(runs), default=1)
    passk = np.array([[r["metrics"].get(f"val/pass_at_{k_max}", {}).get(s, np.nan) for s in steps]
                      for r in runs], float).reshape(len(runs), len(steps))
    flops = np.array([_at_evals(r, "compute/flops_total", steps) for r in runs])
    flops[np.isnan(pass1)] = np.nan
    keys = {k for r in runs for k in r["metrics"] if k.startswith("val/level_") and k.endswith("/pass_at_1")}
    levels = {int(k.split("/")[1][6:]): matrix(runs, k) for k in sorted(keys)}
    x, y = _points(flops, pass1)
    sig = estimate("sigmoid", x, y, fixed=_r0(pass1), n_boot=N_BOOT, seed=0)
    return Group(name, _curriculum(runs[0]), series, runs, steps, flops, pass1, passk, k_max,
                 levels, sig, compute_to_fraction(sig), None, None,
                 [f for f in map(filtering, runs) if f is not None])


def _shared(groups: list[Group]) -> Assessment:
    """One sigmoid over every curriculum's points of a series (R0 fixed at the mean step-0
    pass@1): the ceiling A they share when their efficiencies are compared."""
    x, y = _xy(groups)
    r0 = _r0(np.concatenate([g.pass1[:, :1] for g in groups])) if groups else None
    return estimate("sigmoid", x, y, fixed=r0, n_boot=N_BOOT, seed=0)


def _with_shared_a(g: Group, shared: Assessment) -> Assessment:
    if not shared.identified:
        return Assessment("sigmoid", None, {}, False,
                          ("the shared ceiling A is not identified: " + "; ".join(shared.reasons),))
    fixed = {"A": shared.fit.params["A"], **(_r0(g.pass1) or {})}
    x, y = _xy([g])
    return estimate("sigmoid", x, y, fixed=fixed, n_boot=N_BOOT, seed=0)


def _evals_at_last(g: Group) -> np.ndarray | None:
    """[run, prompt] per-prompt pass@1 at each run's last eval step (None if any lacks it)."""
    rows = []
    for r in g.runs:
        if not r["evals"]:
            return None
        rows.append(r["evals"][max(r["evals"])])
    return np.array(rows, float) if len({len(v) for v in rows}) == 1 else None


def _vs_mixed(g: Group, base: Group | None) -> Gain | None:
    if base is None or g is base:
        return None
    a, b = _evals_at_last(g), _evals_at_last(base)
    if a is None or b is None:
        return None
    return group_difference(a, b)


def analyse(runs: list[dict], grid: GridView) -> Curricula:
    evaluated = [r for r in runs if has_evals(r)]
    skipped = [r["name"] for r in runs if not has_evals(r)]
    if not any(a in grid.axes for a in AXES):
        return Curricula(grid, [], [], skipped)
    groups = [build_group(", ".join(p for p in (f"curriculum={cur}", series) if p), members, series)
              for (series, cur), members in _groups(evaluated, grid).items()]
    series = []
    for s in dict.fromkeys(g.series for g in groups):
        members = [g for g in groups if g.series == s]
        shared = _shared(members)
        base = next((g for g in members if g.curriculum == BASELINE), None)
        members = [_replace(g, shared=_with_shared_a(g, shared), vs_mixed=_vs_mixed(g, base))
                   for g in members]
        series.append(Series(s, shared, members))
    return Curricula(grid, [g for s in series for g in s.groups], series, skipped)


def _replace(g: Group, **kw) -> Group:
    fields = {k: getattr(g, k) for k in g.__dataclass_fields__}
    return Group(**{**fields, **kw})


# ------------------------------------------------------------------ the two questions

def seed_spread(g: Group) -> tuple[float, float]:
    """(min, max) over seeds of the last evaluation's pass@1."""
    last = g.last[np.isfinite(g.last)]
    return (float(last.min()), float(last.max())) if last.size else (np.nan, np.nan)


def ceilings_differ(s: Series) -> tuple[str, str]:
    """"Do the curricula reach different ceilings beyond the seed spread?" for one series:
    (answer, evidence). A pair differs when the difference of their fitted ceilings A has a
    90% interval (bootstrap draws) that excludes 0; where A is not identified for one of them,
    when the seed ranges (min-max) of their last evaluation's pass@1 do not overlap."""
    gs = s.groups
    if len(gs) < 2:
        return "n/a", "fewer than two curricula"
    pairs, fitted = [], 0
    for i, a in enumerate(gs):
        for b in gs[i + 1:]:
            diff = quantity_difference(param(a.sigmoid, "A"), param(b.sigmoid, "A"))
            if diff is not None:
                fitted += 1
                if not diff.inside_noise:
                    pairs.append(f"{a.curriculum} vs {b.curriculum}: A differs by {diff}")
                continue
            if len(a.runs) < 2 or len(b.runs) < 2:
                continue                   # one seed: no spread to compare against
            (alo, ahi), (blo, bhi) = seed_spread(a), seed_spread(b)
            if ahi < blo or bhi < alo:
                pairs.append(f"{a.curriculum} vs {b.curriculum}: seed ranges of the last "
                             f"pass@1 do not overlap ({alo:.3f}-{ahi:.3f} vs {blo:.3f}-{bhi:.3f})")
    n = len(gs) * (len(gs) - 1) // 2
    basis = f"{fitted} of {n} pair(s) compared by fitted A, the rest by the seed ranges"
    if any(len(g.runs) < 2 for g in gs):
        basis += ("; not compared: pairs without a fitted A where a curriculum has one seed "
                  f"({', '.join(g.curriculum for g in gs if len(g.runs) < 2)})")
    if not pairs:
        return "no: inside the noise", basis
    return f"yes, for {len(pairs)} of {n} pair(s)", " | ".join(pairs) + f" ({basis})"


def fewest_flops(s: Series) -> tuple[str, str]:
    """"Which reaches 90% of its ceiling in the fewest FLOPs?" (identified C90s only; a
    winner only if its C90 interval lies below every other identified one)."""
    known = [g for g in s.groups if g.c90.identified]
    if not known:
        return "not identified", "no curriculum's compute to 90% of its gain is identified"
    best = min(known, key=lambda g: g.c90.estimate)
    others = [g for g in known if g is not best]
    clear = all(best.c90.interval.high < g.c90.interval.low for g in others)
    missing = [g.curriculum for g in s.groups if not g.c90.identified]
    tail = f"; not identified: {', '.join(missing)}" if missing else ""
    verdict = best.curriculum + ("" if clear or not others else " (intervals overlap: inside the noise)")
    return verdict, ", ".join(f"{g.curriculum}: {g.c90.interval}" for g in known) + tail
