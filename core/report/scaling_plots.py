"""Figures of the ``scaling`` section (drawing rules in ``core.report.draw``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.report import draw
from core.report.runs import ks_logged, matrix
from core.report.scaling import Group, Scaling


def _not_identified(groups: list[Group], attr: str) -> str:
    bad = [f"{g.label}: {'; '.join(getattr(g, attr).reasons)}" for g in groups
           if not getattr(g, attr).identified]
    return (" Not identified, drawn as data only: " + " | ".join(bad) + ".") if bad else ""


def _style(g: Group) -> str:
    return "--" if g.algorithm == "sft" else "-"


def _band(ax, x, vals, color, label, style="-", lw=1.5) -> None:
    with np.errstate(all="ignore"):
        mean = np.nanmean(vals, axis=0)
        ax.plot(x, mean, style, marker="o", ms=3, color=color, label=label, lw=lw, gid="data")
        if len(vals) > 1:
            ax.fill_between(x, np.nanmin(vals, axis=0), np.nanmax(vals, axis=0), color=color,
                            alpha=0.18, lw=0)


def pass1_vs_step(res: Scaling, out: Path, made: list, colors: dict) -> None:
    plt = draw.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for g in res.groups:
        fit = draw.legend_params(g.satexp, ("A", "tau", "y0"))
        fitted = draw.draw_fit(ax, g.satexp, g.satexp_held, colors[g.name])
        _band(ax, g.steps, g.pass1, colors[g.name], f"{g.label}: {fit}",
              ":" if fitted else _style(g), 0.8 if fitted else 1.5)
    ax.set(xlabel="RL step", ylabel="pass@1 (eval, mean over seeds)",
           title="Pass@1 vs step (lines: A - (A - y0) exp(-step/tau), 90% intervals)")
    ax.legend(fontsize=7)
    draw.save(fig, out, "pass1_vs_step.png",
              "Pass@1 against RL step (points: mean over seeds; band: min-max over seeds; dashed:"
              " SFT controls). Saturating-exponential fits (solid) are drawn over the data only, "
              "with their 90% "
              "bootstrap band; the shaded window holds the last evaluation, and the dashed curve "
              "there is the fit made without it." + _not_identified(res.groups, "satexp"), made)


def passk_vs_k(res: Scaling, out: Path, made: list) -> None:
    plt = draw.pyplot()
    n = len(res.groups)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    for ax, g in zip(axes.ravel(), res.groups):
        ks = ks_logged(g.runs)
        chosen = sorted({g.steps[0], g.steps[len(g.steps) // 2], g.steps[-1]})
        for j, s in enumerate(chosen):
            vals = []
            for k in ks:
                steps, v = matrix(g.runs, f"val/pass_at_{k}")
                with np.errstate(all="ignore"):
                    vals.append(float(np.nanmean(v[:, steps == s])) if s in steps else np.nan)
            ax.plot(ks, vals, "-o", ms=3, label=f"step {int(s)}",
                    color=plt.get_cmap("plasma")(0.15 + 0.35 * j))
        ax.set_xscale("log", base=2)
        ax.set(xlabel="k (samples)", ylabel="pass@k", title=g.label)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    draw.save(fig, out, "passk_vs_k.png", "Unbiased pass@k (Chen et al.) against k at the "
              "first, middle and last evaluation step, mean over seeds, one panel per group.", made)


def creativity_vs_step(res: Scaling, out: Path, made: list, colors: dict) -> None:
    plt = draw.pyplot()
    k_max = max((k for g in res.groups for k in ks_logged(g.runs)), default=0)
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for g in res.groups:
        steps, ci = matrix(g.runs, "val/creativity_index")
        if ci.size:
            _band(ax, steps, ci, colors[g.name], g.label, _style(g))
    ax.set(xlabel="RL step", ylabel=f"creativity index = pass@{k_max}",
           title=f"Creativity index (= pass@k_max, k_max = {k_max}) vs step")
    ax.legend(fontsize=7)
    draw.save(fig, out, "creativity_vs_step.png",
              f"Creativity index, here pass@k_max = pass@{k_max} (not ProRL's n-gram measure), "
              "against RL step; band: min-max over seeds.", made)


def pass1_vs_flops(res: Scaling, out: Path, made: list, colors: dict) -> None:
    plt = draw.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for g in res.groups:
        pos = g.flops > 0
        fit = draw.legend_params(g.sigmoid, ("A", "B", "R0"))
        for i, row in enumerate(g.pass1):
            ax.plot(g.flops[pos], row[pos], "o" if g.algorithm != "sft" else "s", ms=3,
                    color=colors[g.name], alpha=0.7, gid="data",
                    label=f"{g.label}: {fit}" if i == 0 else None)
        draw.draw_fit(ax, g.sigmoid, g.sigmoid_held, colors[g.name], log=True)
    draw.set_axis(ax, [float(f) for g in res.groups for f in g.flops[g.flops > 0]])
    ax.set(xlabel="cumulative RL training compute C (FLOPs)", ylabel="pass@1",
           title="Pass@1 vs compute: R0 + (A - R0) / (1 + (C_mid / C)^B)")
    ax.legend(fontsize=7)
    draw.save(fig, out, "pass1_vs_flops.png",
              "Pass@1 against cumulative RL FLOPs (rollout + reference + update) per trial, "
              "with ScaleRL's sigmoid per group (R0 fixed at the step-0 pass@1; 90% bootstrap "
              "intervals and band). Curves cover the data only; the shaded window holds the "
              "last evaluation and the dashed curve is the fit made without it."
              + _not_identified(res.groups, "sigmoid"), made)


def gain_per_flop(res: Scaling, out: Path, made: list, colors: dict) -> None:
    plt = draw.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for g in res.groups:
        with np.errstate(all="ignore"):
            mean = np.nanmean(g.pass1, axis=0)
            pos = g.flops > 0
            ax.plot(g.steps[pos], (mean[pos] - mean[0]) / g.flops[pos], _style(g), marker="o",
                    ms=3, color=colors[g.name], label=g.label)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="RL step", ylabel="pass@1 gain per FLOP (1/FLOP)",
           title="Pass@1 gained per FLOP")
    ax.legend(fontsize=7)
    draw.save(fig, out, "gain_per_flop.png",
              "(pass@1(t) - pass@1(0)) / cumulative RL FLOPs(t), mean over seeds.", made)


def steps_to_90(res: Scaling, out: Path, made: list, colors: dict) -> None:
    plt = draw.pyplot()
    grid = res.grid
    fig, ax = plt.subplots(figsize=(7, 4.4))
    xs, labels = draw.positions([g.x if g.x is not None else g.name for g in res.groups])
    shown = [(x, g) for x, g in zip(xs, res.groups) if g.t90.identified]
    for x, g in shown:
        beyond = g.t90.estimate > np.nanmax(g.steps)
        draw.errorbar(ax, x, g.t90, colors[g.name],
                      g.label + (" (beyond the last eval: extrapolated)" if beyond else ""),
                      hollow=beyond)
    hidden = [f"{g.label}: {'; '.join(g.t90.reasons)}" for g in res.groups
              if not g.t90.identified]
    if not shown:
        draw.empty_panel(ax, "Steps to 90% of the asymptote are not identified for any group, "
                         "so none is plotted.")
    else:
        draw.set_axis(ax, [x for x, _ in shown])
        if labels:
            ax.set_xticks(range(len(labels)), labels)
        ax.legend(fontsize=7)
    ax.set(xlabel=grid.x_label, ylabel="RL steps to 90% of the asymptote",
           title=f"Steps to 90% of the fitted asymptote vs {grid.x_symbol}")
    draw.save(fig, out, f"steps_to_90_vs_{grid.slug}.png",
              "Steps to reach 90% of each group's fitted asymptote (saturating exponential, "
              "tau ln 10) with 90% bootstrap intervals, against "
              f"{grid.x_label}; hollow: past the group's last evaluation (an extrapolation of "
              "the fit)." + (" Not plotted (not identified): " + " | ".join(hidden)
                                    + "." if hidden else ""), made)


def across_axis(res: Scaling, out: Path, made: list) -> None:
    if not res.across:
        return
    plt = draw.pyplot()
    grid = res.grid
    keys = list(dict.fromkeys(a.key for a in res.across))
    cols = min(2, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.2 * rows), squeeze=False)
    colors = draw.palette(dict.fromkeys(a.series for a in res.across), "plasma")
    for ax, key in zip(axes.ravel(), keys):
        _across_panel(ax, [a for a in res.across if a.key == key], colors, grid)
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    draw.save(fig, out, f"ceiling_vs_{grid.slug}.png",
              f"Per-group quantities against {grid.x_label} with 90% intervals (identified "
              "ones only) and the law fitted across them (a x^b; for model sizes also Tan et "
              "al.'s k(N) = K_max / (1 + N0 / N)), drawn over the data's range when identified; "
              "panel titles give the fit or why it is not identified.", made)


def _across_panel(ax, fits: list, colors: dict, grid) -> None:
    titles, shown = [], 0
    for a in fits:
        lead = f"{a.series}: " if a.series else ""
        for x, q in zip(a.xs, a.quantities):
            if q.identified:
                draw.errorbar(ax, x, q, colors[a.series])
                shown += 1
        draw.draw_fit(ax, a.fit, None, colors[a.series], log=True)
        titles.append(draw.wrap(f"{lead}{a.law}: {a.fit.describe()}", 75))
    if shown:
        draw.log_x(ax)
    else:
        draw.empty_panel(ax, f"{fits[0].quantity}: not identified for any value of "
                         f"{grid.x_symbol}, so nothing is plotted.")
    ax.set(xlabel=grid.x_label, ylabel=fits[0].quantity)
    ax.yaxis.label.set_fontsize(8)
    ax.set_title("\n".join(titles), fontsize=7)


def plots(res: Scaling, out: Path) -> list[tuple[str, str]]:
    if not res.groups:
        return []
    made: list = []
    colors = draw.palette([g.name for g in res.groups])
    pass1_vs_step(res, out, made, colors)
    passk_vs_k(res, out, made)
    creativity_vs_step(res, out, made, colors)
    pass1_vs_flops(res, out, made, colors)
    gain_per_flop(res, out, made, colors)
    steps_to_90(res, out, made, colors)
    across_axis(res, out, made)
    return made
