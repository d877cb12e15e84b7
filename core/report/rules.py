"""The ``rules`` section: rule complexity against model size (issue 18, ``grid=rule_complexity``).

The grid's *level* axis is the first of ``LEVEL_AXES`` it has (task rules:
``data.difficulties``; reward rules: ``reward.options.level`` or ``reward.name``); its other
axis is the policy size N. Per cell (level, size), seeds pooled:

- pass@1 at the last evaluation every seed has, with a 90% bootstrap interval over eval
  prompts and seeds (the per-prompt pass@1 each trial logged);
- the plateau: ``saturating_exp`` A - (A - y0) exp(-step / tau) on pass@1 vs step (y0 fixed at
  the step-0 mean) and the steps to 90% of its asymptote, tau ln 10, with its interval.

Per level:

- Tan et al.'s law across sizes, log(1 - pass@1) = -k log N + E (``power``), fitted with
  ``core.fit.across_sizes`` (each size's bootstrap draws carried on) and its identification
  rules: with three sizes it has 3 distinct N for 2 free parameters (4 needed), so it is
  reported as data only, with that reason;
- the measured N-slope: pass@1 gained per decade of N from the smallest to the largest size,
  (p(N_max) - p(N_min)) / log10(N_max / N_min), with the interval of its bootstrap draws (a
  difference of two measurements, not a fit, so it needs only two sizes).

The answer to "is the N-slope steeper for complex rules?": each level's slope minus the
simplest level's, with the interval of the difference of independent draws; "inside the
noise" when it contains 0.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from core.fit import Assessment, Quantity, across_sizes, estimate, steps_to_fraction
from core.fit.bootstrap import fmt
from core.report import draw
from core.report.runs import GridView, axis_value, has_evals, matrix
from core.report.scaling import slug
from core.report.scaling_html import fit_metrics
from core.report.stats import LEVEL, Gain
from core.report.tables import Table

LEVEL_AXES = ("data.difficulties", "reward.options.level", "reward.name")
N_BOOT = 2000
N_BOOT_FIT = 200


@dataclass(frozen=True, eq=False)
class Cell:
    level: str
    size: str
    n: float                         # policy parameters
    seeds: int
    step: int | None                 # the evaluation step pass@1 is read at
    pass1: Gain                      # mean pass@1 there, interval over prompts and seeds
    note: str                        # how the interval was made
    steps: np.ndarray
    curve: np.ndarray                # pass@1 [seed, step]
    satexp: Assessment               # pass@1 vs step, y0 fixed
    t90: Quantity                    # steps to 90% of the asymptote


@dataclass(frozen=True, eq=False)
class Level:
    label: str
    rank: float
    cells: list                      # by N
    power: Assessment                # Tan et al. across N: log(1 - pass@1) = -k log N + E
    slope: Gain | None               # pass@1 per decade of N, smallest to largest size
    slope_note: str


@dataclass(frozen=True, eq=False)
class Compare:
    level: str
    reference: str
    diff: Gain | None                # slope(level) - slope(reference)
    note: str

    def verdict(self) -> str:
        if self.diff is None:
            return f"n/a: {self.note}"
        if self.diff.inside_noise:
            return "inside the noise"
        return "steeper" if self.diff.estimate > 0 else "shallower"


@dataclass(frozen=True, eq=False)
class Rules:
    axis: str
    levels: list
    compares: list
    notes: list

    def __bool__(self) -> bool:
        return bool(self.levels)


# ------------------------------------------------------------------ numbers

def mean_with_draws(values, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Gain:
    """The mean of a (seeds, prompts) array with a two-way bootstrap over seeds and prompts."""
    a = np.atleast_2d(np.asarray(values, float))
    s, p = a.shape
    rng = np.random.default_rng(seed)
    rc, cc = np.zeros((n_boot, s)), np.zeros((n_boot, p))
    np.add.at(rc, (np.arange(n_boot)[:, None], rng.integers(0, s, (n_boot, s))), 1.0)
    np.add.at(cc, (np.arange(n_boot)[:, None], rng.integers(0, p, (n_boot, p))), 1.0)
    draws = np.einsum("bi,ij,bj->b", rc, a, cc) / (s * p)
    alpha = (1 - level) / 2
    return Gain(float(a.mean()), float(np.quantile(draws, alpha)),
                float(np.quantile(draws, 1 - alpha)), draws, level, f"over {s} seed(s) x {p} prompts")


def _from_draws(estimate: float, draws: np.ndarray, what: str, level: float = LEVEL) -> Gain:
    alpha = (1 - level) / 2
    return Gain(float(estimate), float(np.quantile(draws, alpha)),
                float(np.quantile(draws, 1 - alpha)), draws, level, what)


def level_rank(label: str, declared: tuple[str, ...] = ()) -> float:
    """Where a level sits: the largest number in its label (``[1, 2]`` -> 2, ``composite_l3``
    -> 3), else its place in the grid's declared values."""
    nums = [int(v) for v in re.findall(r"\d+", label)]
    if nums:
        return float(max(nums))
    return float(declared.index(label)) if label in declared else float("inf")


def _seed_of(label: str) -> int:
    return zlib.crc32(label.encode())


def _pass1(runs: list[dict], label: str) -> tuple[Gain | None, int | None, str]:
    """Mean pass@1 at the last eval step every seed logged per-prompt results for; without
    per-prompt results, at the last ``val/pass_at_1`` step, over seeds only."""
    if all(r["evals"] for r in runs):
        common = sorted(set.intersection(*(set(r["evals"]) for r in runs)))
        if common and len({len(r["evals"][common[-1]]) for r in runs}) == 1:
            step = common[-1]
            return (mean_with_draws([r["evals"][step] for r in runs], seed=_seed_of(label)),
                    step, "prompts and seeds")
    steps, vals = matrix(runs, "val/pass_at_1")
    ok = np.isfinite(vals).all(axis=0)
    if not ok.any():
        return None, None, "no evaluation common to every seed"
    j = int(np.nonzero(ok)[0][-1])
    return (mean_with_draws(vals[:, j:j + 1].T, seed=_seed_of(label)), int(steps[j]),
            "seeds only (no per-prompt evaluations logged)")


def _cell(level: str, runs: list[dict]) -> Cell | None:
    label = f"{level} {runs[0]['tags'].get('model_size', '?')}"
    gain, step, note = _pass1(runs, label)
    if gain is None:
        return None
    steps, curve = matrix(runs, "val/pass_at_1")
    r0 = float(np.nanmean(curve[:, 0]))
    x, y = np.tile(steps, len(runs)), curve.ravel()
    keep = np.isfinite(y)
    sat = estimate("saturating_exp", x[keep], y[keep], fixed={"y0": r0}, n_boot=N_BOOT_FIT,
                   seed=0)
    size = runs[0]["tags"].get("model_size", "?")
    n = float(runs[0]["tags"].get("params_count") or "nan")
    return Cell(level, size, n, len(runs), step, gain, note, steps, curve, sat,
                steps_to_fraction(sat))


def _slope(cells: list[Cell]) -> tuple[Gain | None, str]:
    sized = [c for c in cells if np.isfinite(c.n) and c.n > 0]
    if len({c.n for c in sized}) < 2:
        return None, "fewer than two model sizes"
    lo, hi = min(sized, key=lambda c: c.n), max(sized, key=lambda c: c.n)
    decades = np.log10(hi.n / lo.n)
    m = min(len(lo.pass1.draws), len(hi.pass1.draws))
    draws = (hi.pass1.draws[:m] - lo.pass1.draws[:m]) / decades
    return (_from_draws((hi.pass1.estimate - lo.pass1.estimate) / decades, draws,
                        f"{lo.size} -> {hi.size}, {decades:.2f} decades of N"),
            f"{lo.size} -> {hi.size} ({decades:.2f} decades)")


def _power(cells: list[Cell]) -> Assessment:
    qs = [c.pass1.quantity("pass@1") for c in cells]
    return across_sizes("power", [c.n for c in cells], qs, n_boot=N_BOOT_FIT, seed=0)


def _compare(level: Level, ref: Level) -> Compare:
    if level.slope is None or ref.slope is None:
        return Compare(level.label, ref.label, None,
                       "no slope: " + (level.slope_note if level.slope is None else ref.slope_note))
    m = min(len(level.slope.draws), len(ref.slope.draws))
    draws = level.slope.draws[:m] - ref.slope.draws[:m]
    return Compare(level.label, ref.label,
                   _from_draws(level.slope.estimate - ref.slope.estimate, draws,
                               "independent draws"), "")


def level_axis(grid: GridView) -> str | None:
    return next((a for a in LEVEL_AXES if a in grid.axes), None)


def analyse(runs: list[dict], grid: GridView) -> Rules:
    axis = level_axis(grid)
    if axis is None:
        return Rules("", [], [], [f"no level axis ({', '.join(LEVEL_AXES)}) in this grid"])
    declared = grid.values.get(axis, ())
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        if has_evals(r) and (axis_value(r, "rl.algorithm") or "grpo") != "sft":
            key = (str(axis_value(r, axis)), r["tags"].get("model_size", "?"))
            cells.setdefault(key, []).append(r)
    by_level: dict[str, list[Cell]] = {}
    notes = []
    for (lv, size), members in cells.items():
        c = _cell(lv, members)
        if c is None:
            notes.append(f"{axis}={lv}, model={size}: no evaluation common to its seeds")
        else:
            by_level.setdefault(lv, []).append(c)
    levels = []
    for lv, cs in sorted(by_level.items(), key=lambda kv: (level_rank(kv[0], declared), kv[0])):
        cs = sorted(cs, key=lambda c: c.n)
        slope, note = _slope(cs)
        levels.append(Level(lv, level_rank(lv, declared), cs, _power(cs), slope, note))
    compares = [_compare(lv, levels[0]) for lv in levels[1:]]
    return Rules(axis, levels, compares, notes)


# ------------------------------------------------------------------ tables

def _p(g: Gain) -> str:
    """A pass@1 (not a difference: no sign) with its interval."""
    return f"{g.estimate:.3f} [{g.low:.3f}, {g.high:.3f}]"


def slope_table(res: Rules) -> Table:
    rows = []
    ref = {c.level: c for c in res.compares}
    for lv in res.levels:
        points = ", ".join(f"{c.size}: {_p(c.pass1)}" for c in lv.cells)
        slope = lv.slope.verdict() if lv.slope else f"n/a: {lv.slope_note}"
        cmp_ = ref.get(lv.label)
        diff = ("(reference)" if cmp_ is None else
                f"{cmp_.diff} {cmp_.verdict()}" if cmp_.diff else cmp_.verdict())
        rows.append((lv.label, points, slope, diff, lv.power.describe()))
    first = res.levels[0].label if res.levels else "?"
    return Table((f"level ({res.axis})", "pass@1 at the last eval per size [90% CI]",
                  "N-slope: pass@1 per decade of N [90% CI]",
                  f"slope - slope at {first} [90% CI]: steeper for complex rules?",
                  "Tan et al. log(1 - pass@1) = -k log N + E"), tuple(rows),
                 "Is the N-slope steeper for complex rules? Slope: pass@1 gained per decade of "
                 "policy parameters from the smallest to the largest size; intervals resample "
                 "eval prompts and seeds; 'inside the noise' when the interval contains 0.")


def plateau_table(res: Rules) -> Table:
    rows = []
    for lv in res.levels:
        for c in lv.cells:
            t90 = f"{c.t90.interval}" if c.t90.identified else \
                f"not identified ({'; '.join(c.t90.reasons)})"
            rows.append((lv.label, c.size, fmt(c.n), str(c.seeds), f"{np.nanmean(c.curve[:, 0]):.3f}",
                         f"{_p(c.pass1)} (step {c.step})", c.satexp.describe(), t90))
    return Table((f"level ({res.axis})", "size", "N", "seeds", "pass@1 step 0",
                  "pass@1 last [90% CI]", "saturating exp: A - (A - y0) exp(-step/tau)",
                  "plateau: steps to 90% of A [90% CI]"), tuple(rows),
                 "Where each level plateaus: the saturating exponential fitted to pass@1 vs "
                 "RL step per level and size (y0 fixed at the step-0 pass@1), and tau ln 10.")


def html(res: Rules) -> str:
    if not res:
        return "<p>" + "; ".join(res.notes) + "</p>" if res.notes else ""
    notes = "".join(f"<li>{n}</li>" for n in res.notes)
    return (slope_table(res).html() + plateau_table(res).html()
            + (f"<ul>{notes}</ul>" if notes else ""))


def tables(res: Rules) -> dict[str, str]:
    if not res:
        return {}
    return {"rules": slope_table(res).markdown(), "rules_plateau": plateau_table(res).markdown()}


def metrics(res: Rules) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for lv in res.levels:
        key = f"rules/{slug(lv.label)}"
        out.update(fit_metrics(f"{key}/tan_n", lv.power, None))
        if lv.slope is not None:
            out[f"{key}/slope"], out[f"{key}/slope_low"], out[f"{key}/slope_high"] = \
                lv.slope.estimate, lv.slope.low, lv.slope.high
    for c in res.compares:
        if c.diff is not None:
            out[f"rules/{slug(c.level)}/slope_minus_{slug(c.reference)}"] = c.diff.estimate
        out[f"rules/{slug(c.level)}/steeper"] = c.verdict()
    return out


# ------------------------------------------------------------------ figures

def plots(res: Rules, out) -> list[tuple[str, str]]:
    if not res:
        return []
    made: list = []
    plt = draw.pyplot()
    colors = draw.palette([lv.label for lv in res.levels], "plasma")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    for lv in res.levels:
        for i, c in enumerate(lv.cells):
            draw.errorbar(ax, c.n, c.pass1, colors[lv.label],
                          f"{lv.label}: {draw.legend_params(lv.power, ('k', 'E'))}" if i == 0 else None)
        draw.draw_fit(ax, lv.power, None, colors[lv.label], log=True)
    draw.log_x(ax)
    ax.set(xlabel="policy parameters N", ylabel="pass@1 (last eval)",
           title="Pass@1 vs N per level (lines: Tan et al., identified fits only)")
    ax.legend(fontsize=7)
    ax = axes[1]
    shown = [(lv.rank, lv) for lv in res.levels if lv.slope is not None]
    for x, lv in shown:
        draw.errorbar(ax, x, lv.slope, colors[lv.label], lv.label)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="level", ylabel="pass@1 per decade of N",
           title="N-slope per level (90% CI)")
    if not shown:
        draw.empty_panel(ax, "No level has two model sizes: no slope.")
    ax = axes[2]
    sizes = sorted({(c.n, c.size) for lv in res.levels for c in lv.cells})
    size_colors = draw.palette([s for _, s in sizes])
    for _, size in sizes:
        for lv in res.levels:
            for c in lv.cells:
                if c.size == size and c.t90.identified:
                    draw.errorbar(ax, lv.rank, c.t90, size_colors[size], None,
                                  hollow=c.t90.estimate > np.nanmax(c.steps))
        ax.plot([], [], "o", color=size_colors[size], label=size)
    ax.set(xlabel="level", ylabel="RL steps to 90% of the asymptote",
           title="Plateau step per level and size (identified only)")
    if any(c.t90.identified for lv in res.levels for c in lv.cells):
        ax.legend(fontsize=7)
    else:
        draw.empty_panel(ax, "No plateau step is identified for any level and size, so none "
                         "is plotted (reasons in the caption and the rules_plateau table).")
    hidden = [f"{lv.label}/{c.size}: {'; '.join(c.t90.reasons)}" for lv in res.levels
              for c in lv.cells if not c.t90.identified]
    bad = [f"{lv.label}: {'; '.join(lv.power.reasons)}" for lv in res.levels
           if not lv.power.identified]
    draw.save(fig, out, "rules_vs_n.png",
              "Left: pass@1 at the last evaluation against policy size N per rule level (90% "
              "intervals over prompts and seeds), with Tan et al.'s log(1 - pass@1) = -k log N "
              "+ E where identified. Middle: pass@1 gained per decade of N (smallest to largest "
              "size). Right: steps to 90% of the fitted saturating exponential's asymptote "
              "(hollow: past the last evaluation)."
              + (" Not identified, data only: " + " | ".join(bad) + "." if bad else "")
              + (" Plateau not identified: " + " | ".join(hidden) + "." if hidden else ""), made)
    return made

