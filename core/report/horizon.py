"""The ``horizon`` section: RL on multi-turn environments against the horizon (issue 16,
``grid=horizon``).

The grid's axes: the horizon knob (``data.difficulties``: the environment's level, which sets
the turns an expert needs and the turn limit), the policy size N (``model``), the environment
(``data.domains``) and seeds. Per cell (environment, horizon, size), seeds pooled:

- success rate (= pass@1 over episodes) and mean return against step, with the seeds' range;
- the RL gain in success from step 0 to the last evaluation every seed has, with a 90%
  bootstrap interval over eval episodes' seeds (records) and training seeds
  (``stats.paired_gain`` on the per-record success rates each trial logged); the return gain
  (mean over seeds; an interval over seeds only when there are two or more);
- turns and invalid actions per episode at the last evaluation.

Per (environment, size), how the gain scales with horizon: the gains at each horizon, the
difference longest - shortest horizon with the interval of independent draws ("inside the
noise" when it contains 0), and ``power_n`` gain = a h^b across horizons through
``core.fit.across_sizes`` with its identification rules (two horizons: not identified, data
only, with the reason). Per (environment, horizon), Hilton et al.'s question (does the
N-scaling coefficient or exponent move with horizon?): Tan et al.'s law across sizes
(``power``: log(1 - success) = -k log N + E) where identified, else data only, and the
measured N-slope (success gained per decade of N, smallest to largest size) with its interval.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from core.fit import Assessment, across_sizes
from core.report import draw
from core.report.runs import GridView, axis_value, matrix
from core.report.scaling import slug
from core.report.scaling_html import fit_metrics
from core.report.stats import LEVEL, Gain, paired_gain
from core.report.tables import Table

HORIZON_AXIS, ENV_AXIS = "data.difficulties", "data.domains"
N_BOOT = 2000
N_BOOT_FIT = 200


@dataclass(frozen=True, eq=False)
class Cell:
    env: str
    horizon: int
    size: str
    n: float                         # policy parameters
    seeds: int
    steps: np.ndarray
    success: np.ndarray              # [seed, step]
    ret: np.ndarray                  # [seed, step]
    step: int | None                 # the last evaluation every seed has (per-record results)
    gain: Gain | None                # success there - success at step 0, prompts x seeds
    last: Gain | None                # success there (mean, same draws' interval)
    return_gain: float
    return_gain_ci: tuple[float, float] | None
    turns: float
    invalid: float
    note: str


@dataclass(frozen=True, eq=False)
class Scaling:
    env: str
    size: str
    cells: list                      # by horizon
    diff: Gain | None                # gain(longest) - gain(shortest)
    law: Assessment                  # gain = a h^b across horizons


@dataclass(frozen=True, eq=False)
class NScaling:
    env: str
    horizon: int
    slope: Gain | None               # success per decade of N
    tan: Assessment                  # log(1 - success) = -k log N + E


@dataclass(frozen=True, eq=False)
class Horizon:
    cells: list
    scaling: list
    n_scaling: list
    notes: list

    def __bool__(self) -> bool:
        return bool(self.cells)


# ------------------------------------------------------------------ numbers

def _words(value) -> str:
    return ",".join(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(value))) or str(value)


def _level(value) -> int:
    nums = [int(v) for v in re.findall(r"\d+", str(value))]
    return max(nums) if nums else 0


def _draws(est: float, draws: np.ndarray, what: str) -> Gain:
    a = (1 - LEVEL) / 2
    return Gain(float(est), float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a)), draws, LEVEL, what)


def _gain(runs: list[dict], seed: int) -> tuple[Gain | None, Gain | None, int | None, str]:
    evals = [r.get("evals") or {} for r in runs]
    common = sorted(set.intersection(*(set(e) for e in evals))) if all(evals) else []
    if len(common) < 2 or 0 not in common or len({len(e[common[-1]]) for e in evals}) != 1:
        return None, None, None, "no per-record evaluations at step 0 and a later step for every seed"
    step = common[-1]
    before = np.array([e[0] for e in evals], float)
    after = np.array([e[step] for e in evals], float)
    gain = paired_gain(before, after, n_boot=N_BOOT, seed=seed)
    last = paired_gain(np.zeros_like(after), after, n_boot=N_BOOT, seed=seed)
    return gain, last, step, gain.what


def _cell(env: str, horizon: int, runs: list[dict]) -> Cell:
    size = runs[0]["tags"].get("model_size", "?")
    label = f"{env} {horizon} {size}"
    steps, success = matrix(runs, "val/success")
    _, ret = matrix(runs, "val/return")
    gain, last, step, note = _gain(runs, zlib.crc32(label.encode()))
    j = np.isfinite(ret).all(axis=0)
    rg, ci = float("nan"), None
    if j.any():
        k = int(np.nonzero(j)[0][-1])
        per_seed = ret[:, k] - ret[:, 0]
        rg = float(per_seed.mean())
        if len(per_seed) >= 2:
            rng = np.random.default_rng(0)
            boots = per_seed[rng.integers(0, len(per_seed), (N_BOOT, len(per_seed)))].mean(axis=1)
            ci = (float(np.quantile(boots, 0.05)), float(np.quantile(boots, 0.95)))

    def at_last(key: str) -> float:
        _, v = matrix(runs, key)
        ok = np.isfinite(v).all(axis=0)
        return float(v[:, np.nonzero(ok)[0][-1]].mean()) if ok.any() else float("nan")
    return Cell(env, horizon, size, float(runs[0]["tags"].get("params_count") or "nan"), len(runs),
                steps, success, ret, step, gain, last, rg, ci, at_last("val/turns"),
                at_last("val/invalid"), note)


def _scaling(env: str, size: str, cells: list[Cell]) -> Scaling:
    cells = sorted(cells, key=lambda c: c.horizon)
    with_gain = [c for c in cells if c.gain is not None]
    diff = None
    if len({c.horizon for c in with_gain}) >= 2:
        lo, hi = with_gain[0], with_gain[-1]
        m = min(len(lo.gain.draws), len(hi.gain.draws))
        diff = _draws(hi.gain.estimate - lo.gain.estimate, hi.gain.draws[:m] - lo.gain.draws[:m],
                      f"L{hi.horizon} - L{lo.horizon}, independent draws")
    law = across_sizes("power_n", [float(c.horizon) for c in with_gain],
                       [c.gain.quantity("RL gain") for c in with_gain], n_boot=N_BOOT_FIT, seed=0)
    return Scaling(env, size, cells, diff, law)


def _n_scaling(env: str, horizon: int, cells: list[Cell]) -> NScaling:
    sized = sorted((c for c in cells if c.last is not None and np.isfinite(c.n) and c.n > 0),
                   key=lambda c: c.n)
    slope = None
    if len({c.n for c in sized}) >= 2:
        lo, hi = sized[0], sized[-1]
        dec = np.log10(hi.n / lo.n)
        m = min(len(lo.last.draws), len(hi.last.draws))
        slope = _draws((hi.last.estimate - lo.last.estimate) / dec,
                       (hi.last.draws[:m] - lo.last.draws[:m]) / dec,
                       f"{lo.size} -> {hi.size}, {dec:.2f} decades of N")
    tan = across_sizes("power", [c.n for c in sized], [c.last.quantity("success") for c in sized],
                       n_boot=N_BOOT_FIT, seed=0)
    return NScaling(env, horizon, slope, tan)


def analyse(runs: list[dict], grid: GridView) -> Horizon:
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for r in runs:
        if not r["metrics"].get("val/success") or (axis_value(r, "rl.algorithm") or "grpo") == "sft":
            continue
        env = _words(axis_value(r, ENV_AXIS) or "?")
        groups.setdefault((env, _level(axis_value(r, HORIZON_AXIS) or 0),
                           r["tags"].get("model_size", "?")), []).append(r)
    cells = sorted((_cell(e, h, members) for (e, h, _s), members in groups.items()),
                   key=lambda c: (c.env, c.horizon, c.n))
    notes = [] if cells else ["no trial logged episode metrics (val/success): not a multi-turn grid"]
    scaling, n_scaling = [], []
    for env in sorted({c.env for c in cells}):
        for size in sorted({c.size for c in cells if c.env == env},
                           key=lambda s: min(c.n for c in cells if c.size == s)):
            scaling.append(_scaling(env, size, [c for c in cells if (c.env, c.size) == (env, size)]))
        for h in sorted({c.horizon for c in cells if c.env == env}):
            n_scaling.append(_n_scaling(env, h, [c for c in cells if (c.env, c.horizon) == (env, h)]))
    return Horizon(cells, scaling, n_scaling, notes)


# ------------------------------------------------------------------ tables

def _ci(v: float, ci) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else " (1 seed)")


def cell_table(res: Horizon) -> Table:
    rows = []
    for c in res.cells:
        s0, s1 = np.nanmean(c.success[:, 0]), np.nanmean(c.success[:, -1])
        r0, r1 = np.nanmean(c.ret[:, 0]), np.nanmean(c.ret[:, -1])
        rows.append((c.env, f"L{c.horizon}", f"{c.size} ({draw.short(c.n)})", str(c.seeds),
                     f"{s0:.3f} -> {s1:.3f}", c.gain.verdict() if c.gain else f"n/a: {c.note}",
                     f"{r0:.2f} -> {r1:.2f}", _ci(c.return_gain, c.return_gain_ci),
                     f"{c.turns:.1f}", f"{c.invalid:.2f}"))
    return Table(("env", "horizon (level)", "size (params)", "seeds", "success step 0 -> last",
                  "RL gain in success [90% CI]", "return step 0 -> last", "return gain",
                  "turns (last)", "invalid/episode (last)"), tuple(rows),
                 "Success = pass@1 over episodes. Gain intervals resample eval records and seeds; "
                 "'inside the noise' when the interval contains 0.")


def scaling_table(res: Horizon) -> Table:
    rows = []
    for s in res.scaling:
        gains = ", ".join(f"L{c.horizon}: {c.gain}" if c.gain else f"L{c.horizon}: n/a" for c in s.cells)
        rows.append((s.env, s.size, gains, s.diff.verdict() if s.diff else "n/a: one horizon",
                     s.law.describe()))
    for n in res.n_scaling:
        rows.append((n.env, f"N-scaling at L{n.horizon}", "",
                     f"slope {n.slope.verdict()}" if n.slope else "n/a: fewer than two sizes",
                     n.tan.describe()))
    return Table(("env", "size", "RL gain per horizon [90% CI]",
                  "gain(longest) - gain(shortest) [90% CI]; N-slope per decade",
                  "law (gain = a h^b; Tan et al. log(1 - success) = -k log N + E)"), tuple(rows),
                 "How the RL gain scales with horizon, per size; and the N-scaling of success per "
                 "horizon. A law not identified is data only, with its reasons.")


def html(res: Horizon) -> str:
    if not res:
        return "".join(f"<p>{n}</p>" for n in res.notes)
    return cell_table(res).html() + scaling_table(res).html()


def tables(res: Horizon) -> dict[str, str]:
    return {"horizon": cell_table(res).markdown(),
            "horizon_scaling": scaling_table(res).markdown()} if res else {}


def metrics(res: Horizon) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for c in res.cells:
        key = f"horizon/{slug(c.env)}/L{c.horizon}/{slug(c.size)}"
        if c.gain:
            out.update({f"{key}/gain": c.gain.estimate, f"{key}/gain_low": c.gain.low,
                        f"{key}/gain_high": c.gain.high})
    for s in res.scaling:
        out.update(fit_metrics(f"horizon/{slug(s.env)}/{slug(s.size)}/gain_law", s.law, None))
    return out


# ------------------------------------------------------------------ plots

def plots(res: Horizon, out) -> list[tuple[str, str]]:
    made: list = []
    if not res:
        return made
    plt = draw.pyplot()
    envs = sorted({c.env for c in res.cells})
    fig, axes = plt.subplots(2, len(envs), figsize=(5.5 * len(envs), 7.5), squeeze=False)
    colors = draw.palette(sorted({(c.size, c.horizon) for c in res.cells}), "viridis")
    for j, env in enumerate(envs):
        for i, (what, ylabel) in enumerate((("success", "success rate"), ("ret", "mean return"))):
            ax = axes[i, j]
            for c in (c for c in res.cells if c.env == env):
                vals = getattr(c, what)
                color = colors[(c.size, c.horizon)]
                ax.plot(c.steps, np.nanmean(vals, axis=0), "o-", color=color,
                        label=f"{c.size}, L{c.horizon}", gid="data")
                if len(vals) > 1:
                    ax.fill_between(c.steps, np.nanmin(vals, axis=0), np.nanmax(vals, axis=0),
                                    color=color, alpha=0.2)
            ax.set(xlabel="RL step", ylabel=ylabel, title=f"{env}: {ylabel} vs step")
            ax.legend(fontsize=7)
    draw.save(fig, out, "horizon_curves.png",
              "Success rate (pass@1 over episodes) and mean return against RL step, per "
              "environment, one line per (size, horizon level); bands: the seeds' range.", made)
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for j, env in enumerate(envs):
        ax = axes[0, j]
        for s in (s for s in res.scaling if s.env == env):
            color = draw.palette([x.size for x in res.scaling if x.env == env])[s.size]
            for k, c in enumerate(x for x in s.cells if x.gain is not None):
                draw.errorbar(ax, c.horizon, c.gain, color,
                              s.size if k == 0 else None)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="horizon (level)", ylabel="RL gain in success",
               title=f"{env}: RL gain vs horizon (90% CI; data only)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    draw.save(fig, out, "horizon_gain.png",
              "RL gain in success from step 0 to the last evaluation against the horizon level, "
              "per size, with 90% intervals over eval records and seeds (no curve: a law across "
              "two horizons is not identified).", made)
    return made
