"""Tables, HTML, parent-run metrics and figures of the ``curriculum`` section."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from core.fit.bootstrap import fmt
from core.report import draw
from core.report.curriculum import Curricula, Group, ceilings_differ, fewest_flops, seed_spread
from core.report.scaling import param, slug
from core.report.scaling_html import fit_metrics, interval_metrics
from core.report.tables import Table


def _q(q) -> str:
    return str(q.interval) if q.identified else "not identified"


def _last(g: Group) -> str:
    lo, hi = seed_spread(g)
    with np.errstate(all="ignore"):
        mean = float(np.nanmean(g.last))
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f}" + (f" (seeds {lo:.3f}-{hi:.3f})" if len(g.runs) > 1 else "")


def _first(g: Group) -> str:
    with np.errstate(all="ignore"):
        v = float(np.nanmean(g.pass1[:, 0])) if g.pass1.size else float("nan")
    return f"{v:.3f}" if np.isfinite(v) else "n/a"


def _spent(g: Group) -> str:
    """Steps run and training FLOPs at the last evaluation (mean over seeds)."""
    steps = [max(r["metrics"]["val/pass_at_1"]) for r in g.runs]
    with np.errstate(all="ignore"):
        flops = float(np.nanmean([row[np.isfinite(row)][-1] for row in g.flops if np.isfinite(row).any()]))
    lo, hi = min(steps), max(steps)
    return f"{lo}" + (f"-{hi}" if hi != lo else "") + f", {fmt(flops)}"


def _flops_spent(g: Group) -> str:
    if not g.filtering:
        return ""
    extra = float(np.mean([f.extra_flops for f in g.filtering]))
    total = float(np.mean([f.total_flops for f in g.filtering]))
    groups = float(np.mean([f.filtered_groups for f in g.filtering]))
    share = f" ({extra / total:.0%} of the trial's training FLOPs)" if total > 0 else ""
    return f"{groups:.0f} groups dropped, {fmt(extra)} FLOPs of extra rollouts{share}"


def curriculum_table(res: Curricula) -> Table:
    rows = []
    for s in res.series:
        for g in s.groups:
            b = (f"{g.shared.intervals['B']}" if g.shared is not None and g.shared.identified
                 else "not identified")
            vs = ("baseline" if g.curriculum == "mixed" else
                  g.vs_mixed.verdict() if g.vs_mixed is not None else "n/a")
            rows.append((g.series or "all", g.curriculum, str(len(g.runs)), _first(g), _spent(g),
                         _last(g), vs,
                         _q(param(g.sigmoid, "A")), b, _q(g.c90), _flops_spent(g)))
        ans, why = ceilings_differ(s)
        rows.append((s.name or "all", "different ceilings beyond the seed spread?", "", "", "",
                     "", "", ans, "", why, ""))
        ans, why = fewest_flops(s)
        shared = (f"shared A = {s.shared_a.intervals['A']}" if s.shared_a.identified else
                  "shared A not identified: " + "; ".join(s.shared_a.reasons))
        rows.append((s.name or "all", "fewest FLOPs to 90% of its ceiling?", "", "", "", "", "",
                     "", shared, f"{ans}: {why}", ""))
    return Table(("series", "curriculum", "seeds", "pass@1 step 0", "steps, training FLOPs",
                  "pass@1 last eval", "vs mixed [90% CI]",
                  "ceiling A [90%]", "B, A shared [90%]", "FLOPs to 90% of gain [90%]",
                  "filtering spent"), tuple(rows),
                 "Curricula at equal RL compute (rl.max_flops). A: ScaleRL sigmoid on pass@1 vs "
                 "FLOPs per curriculum, R0 fixed at step 0. B: the same with A fixed at one "
                 "sigmoid fitted to every curriculum of the series (its interval is conditional "
                 "on that A). vs mixed: last-eval pass@1 minus mixed's, seeds resampled per "
                 "group, eval prompts paired. 'not identified' = the fit failed "
                 "core.fit's rules (reasons in the report).")


def reasons_table(res: Curricula) -> Table:
    rows = [(g.name, "sigmoid (A, B, C_mid free)", g.sigmoid.describe()) for g in res.groups]
    rows += [(g.name, "sigmoid, A shared", g.shared.describe()) for g in res.groups
             if g.shared is not None]
    rows += [(s.name or "all", "shared A (every curriculum's points)", s.shared_a.describe())
             for s in res.series]
    return Table(("trials", "fit", "parameters [90% bootstrap interval] or why not identified"),
                 tuple(rows))


def tables(res: Curricula) -> dict[str, str]:
    return {"curriculum": curriculum_table(res).markdown()}


def render(res: Curricula) -> str:
    parts = ["<h3>Curricula at equal compute</h3>", curriculum_table(res).html(),
             "<h3>Fits</h3>", reasons_table(res).html()]
    if res.skipped:
        parts.append("<p>Runs without any evaluation, left out: "
                     + html.escape(", ".join(res.skipped)) + ".</p>")
    return "\n".join(parts)


def metrics(res: Curricula) -> dict[str, float | str]:
    """``curriculum/<group>/sigmoid/...`` and ``.../shared_a/...`` per fit,
    ``curriculum/<group>/c90``, ``.../vs_mixed``, ``.../extra_flops``."""
    out: dict[str, float | str] = {}
    for g in res.groups:
        p = f"curriculum/{slug(g.name)}"
        out.update(fit_metrics(f"{p}/sigmoid", g.sigmoid, None))
        if g.shared is not None:
            out.update(fit_metrics(f"{p}/shared_a", g.shared, None))
        if g.c90.identified:
            out.update(interval_metrics(f"{p}/c90", g.c90.estimate, g.c90.interval.low,
                                        g.c90.interval.high))
        if g.vs_mixed is not None:
            out.update(interval_metrics(f"{p}/vs_mixed", g.vs_mixed.estimate, g.vs_mixed.low,
                                        g.vs_mixed.high))
        if g.filtering:
            out[f"{p}/extra_flops"] = float(np.mean([f.extra_flops for f in g.filtering]))
            out[f"{p}/filtered_groups"] = float(np.mean([f.filtered_groups for f in g.filtering]))
    return out


# ------------------------------------------------------------------ figures

def _band(ax, x, vals, color, label, style="-") -> None:
    with np.errstate(all="ignore"):
        mean = np.nanmean(vals, axis=0)
        ax.plot(x, mean, style, marker="o", ms=3, color=color, label=label, lw=1.3, gid="data")
        if len(vals) > 1:
            ax.fill_between(x, np.nanmin(vals, axis=0), np.nanmax(vals, axis=0), color=color,
                            alpha=0.18, lw=0)


def _vs_flops(res: Curricula, out: Path, made: list, colors: dict, what: str) -> None:
    plt = draw.pyplot()
    n = len(res.series)
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.2), squeeze=False)
    hidden = []
    for ax, s in zip(axes[0], res.series):
        for g in s.groups:
            vals = g.pass1 if what == "pass1" else g.passk
            with np.errstate(all="ignore"):
                x = np.nanmean(g.flops, axis=0)
            label = g.curriculum
            if what == "pass1":
                label += ": " + draw.legend_params(g.sigmoid, ("A", "B"))
                if draw.draw_fit(ax, g.sigmoid, None, colors[g.curriculum], log=True):
                    label += " (fit solid)"
                else:
                    hidden.append(f"{g.name}: {'; '.join(g.sigmoid.reasons)}")
            pos = x > 0
            _band(ax, x[pos], vals[:, pos], colors[g.curriculum], label,
                  ":" if what == "pass1" and g.sigmoid.identified else "-")
        draw.set_axis(ax, [float(v) for g in s.groups for v in np.ravel(g.flops) if v > 0])
        k = s.groups[0].k_max if s.groups else "k_max"
        ax.set(xlabel="cumulative RL training FLOPs", title=s.name or "all",
               ylabel="pass@1" if what == "pass1" else f"pass@{k}")
        ax.legend(fontsize=7)
    name = "curriculum_pass1_vs_flops.png" if what == "pass1" else "curriculum_passk_vs_flops.png"
    caption = ("Pass@1 against RL FLOPs per curriculum (mean over seeds, band min-max). Sigmoids "
               "(R0 fixed) drawn only where identified, over the data only."
               + (" Not identified, data only: " + " | ".join(hidden) + "." if hidden else "")
               if what == "pass1" else
               "Pass@k_max against RL FLOPs per curriculum (mean over seeds, band min-max).")
    draw.save(fig, out, name, caption, made)


def _levels(res: Curricula, out: Path, made: list, colors: dict) -> None:
    levels = sorted({lv for g in res.groups for lv in g.levels})
    if not levels:
        return
    plt = draw.pyplot()
    rows, cols = len(res.series), len(levels)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for i, s in enumerate(res.series):
        for j, lv in enumerate(levels):
            ax = axes[i][j]
            for g in s.groups:
                if lv in g.levels:
                    _band(ax, *g.levels[lv], colors[g.curriculum], g.curriculum)
            ax.set(xlabel="RL step", ylabel="pass@1", title=f"{s.name or 'all'}, level {lv}")
            ax.title.set_fontsize(9)
    axes[0][0].legend(fontsize=7)
    draw.save(fig, out, "curriculum_levels_vs_step.png",
              "Pass@1 per difficulty level against RL step, per curriculum (mean over seeds, "
              "band min-max); one row per model size.", made)


def plots(res: Curricula, out: Path) -> list[tuple[str, str]]:
    if not res.groups:
        return []
    made: list = []
    colors = draw.palette(dict.fromkeys(g.curriculum for g in res.groups), "tab10")
    _vs_flops(res, out, made, colors, "pass1")
    _vs_flops(res, out, made, colors, "passk")
    _levels(res, out, made, colors)
    return made
