"""Plots, tables, HTML and parent-run metrics of the ``transfer`` section."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from core.report import draw
from core.report.scaling import slug
from core.report.scaling_html import fit_metrics, interval_metrics
from core.report.tables import Table
from core.report.transfer import Transfer

FIT_TEXT = "A (1 - exp(-D_RL / tau))"


def _rung(d) -> str:
    return "" if d is None else f"{d:g}"


# ------------------------------------------------------------------ tables

def matrix_table(res: Transfer) -> Table:
    rows = []
    for setting in res.settings:
        for d in res.d_rls or [None]:
            for source in res.sources:
                cells = [res.cell(setting, source, d, t) for t in res.targets]
                if not any(cells):
                    continue
                seeds = max(c.seeds for c in cells if c)
                rows.append((setting, _rung(d), source, str(seeds))
                            + tuple(c.text() if c else "" for c in cells))
    return Table(("setting", "D_RL", "RL on", "seeds") + tuple(f"-> {t}" for t in res.targets),
                 tuple(rows), "Gain in pass@1 on each target domain from step 0 (the base) to the "
                 "last eval, with a 90% interval over that domain's eval prompts and the seeds; "
                 "* marks an interval above or below zero (the rest are inside the noise).")


def minimal_table(res: Transfer) -> Table:
    rows = []
    for c in res.curves:
        kind = "in-domain" if c.target in c.source.split("+") else "transfer"
        gains = "; ".join(f"{x.d_rl:g}: {x.estimate:+.3f}" for x in c.cells)
        rows.append((c.setting, c.source, c.target, kind, gains, c.minimal, c.fit.describe()))
    return Table(("setting", "RL on", "target", "pair", "gain by D_RL", "minimal D_RL "
                  "(interval above 0)", f"fit gain = {FIT_TEXT}"), tuple(rows),
                 "The minimal D_RL is the smallest rung of the grid's ladder whose gain "
                 "interval lies above zero, given as (previous rung, rung]. The fit is "
                 "core.fit's saturating law with y0 = 0; a fit that is not identified is "
                 "data only, with its reasons.")


def tables(res: Transfer) -> dict[str, str]:
    if not res:
        return {}
    out = {"transfer": matrix_table(res).markdown()}
    if res.d_rls:
        out["transfer_data"] = minimal_table(res).markdown() + (
            f"\n{res.size_note}\n" if res.size_note else "")
    return out


def render(res: Transfer) -> str:
    if not res:
        return "<p>No trial here trains on a source domain and evaluates on several.</p>"
    parts = [matrix_table(res).html()]
    if res.d_rls:
        parts.append(minimal_table(res).html())
    if res.size_note:
        parts.append(f"<p>{html.escape(res.size_note)}</p>")
    return "\n".join(parts)


# ------------------------------------------------------------------ metrics

def metrics(res: Transfer) -> dict[str, float | str]:
    """``transfer/<setting>/<source>_to_<target>[/d_rl_<D>]/gain`` (+ ``_low``/``_high``),
    ``.../min_d_rl`` where reached, and the saturating fit per pair."""
    out: dict[str, float | str] = {}
    for c in res.cells:
        key = f"transfer/{slug(c.setting)}/{slug(c.source)}_to_{slug(c.target)}"
        key += f"/d_rl_{c.d_rl:g}" if c.d_rl is not None else ""
        if c.gain is not None:
            out.update(interval_metrics(f"{key}/gain", c.gain.estimate, c.gain.low, c.gain.high))
        elif np.isfinite(c.estimate):
            out[f"{key}/gain"] = c.estimate
    for c in res.curves:
        key = f"transfer/{slug(c.setting)}/{slug(c.source)}_to_{slug(c.target)}"
        if c.minimal_d is not None:
            out[f"{key}/min_d_rl"] = float(c.minimal_d)
        if len(c.cells) > 1:
            out.update(fit_metrics(f"{key}/saturating", c.fit, None))
    if res.size_note:
        out["transfer/size_note"] = res.size_note
    return out


# ------------------------------------------------------------------ plots

def _matrix(res: Transfer, out: Path, made: list) -> None:
    plt = draw.pyplot()
    d = res.d_rls[-1] if res.d_rls else None
    n = len(res.settings)
    fig, axes = plt.subplots(1, n, figsize=(2.4 + 1.6 * len(res.targets) * n,
                                            1.8 + 0.9 * len(res.sources)), squeeze=False)
    vals = [c.estimate for c in res.cells if c.d_rl == d and np.isfinite(c.estimate)]
    lim = max([abs(v) for v in vals] + [0.05])
    for ax, setting in zip(axes[0], res.settings):
        grid = np.full((len(res.sources), len(res.targets)), np.nan)
        for i, s in enumerate(res.sources):
            for j, t in enumerate(res.targets):
                c = res.cell(setting, s, d, t)
                if c is None:
                    continue
                grid[i, j] = c.estimate
                quiet = c.gain is None or c.gain.inside_noise
                txt = f"{c.estimate:+.3f}" + (f"\n[{c.gain.low:+.3f}, {c.gain.high:+.3f}]"
                                              if c.gain is not None else "\n(no CI)")
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="0.45" if quiet else "black", fontweight="normal" if quiet else "bold")
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(res.targets)), res.targets)
        ax.set_yticks(range(len(res.sources)), res.sources)
        ax.set(xlabel="evaluated on (target)", ylabel="RL on (source)",
               title=f"{setting}" + (f", D_RL = {d:g}" if d is not None else ""))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="gain in pass@1")
    draw.save(fig, out, "transfer_matrix.png",
              "Transfer matrix per setting at the largest D_RL: gain in pass@1 from step 0 to "
              "the last eval on each target domain after RL on the source domain, with 90% "
              "intervals over eval prompts and seeds. Bold: the interval excludes zero; grey: "
              "inside the noise.", made)


def _versus_d(res: Transfer, out: Path, made: list) -> None:
    plt = draw.pyplot()
    n = len(res.targets)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False, sharey=True)
    colors = draw.palette(res.sources, "tab10" if len(res.sources) <= 10 else "viridis")
    markers = dict(zip(res.settings, "os^Dvp*"))
    for ax, target in zip(axes[0], res.targets):
        for c in (c for c in res.curves if c.target == target):
            color = colors[c.source]
            label = f"{c.source}, {c.setting}: {draw.legend_params(c.fit, ('A', 'tau'))}"
            for i, x in enumerate(c.cells):
                q = x.gain if x.gain is not None else None
                if q is not None:
                    draw.errorbar(ax, x.d_rl, q, color, label if i == 0 else None,
                                  hollow=c.setting != res.settings[-1])
                else:
                    ax.plot([x.d_rl], [x.estimate], markers.get(c.setting, "o"), color=color,
                            label=label if i == 0 else None)
            draw.draw_fit(ax, c.fit, None, color, log=True)
        ax.axhline(0, color="0.6", lw=0.8)
        draw.log_x(ax)
        ax.set(xlabel="RL prompts D_RL", title=f"gain on {target}")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("gain in pass@1 (last eval - step 0)")
    bad = sorted({"; ".join(c.fit.reasons) for c in res.curves if not c.fit.identified})
    draw.save(fig, out, "transfer_vs_d_rl.png",
              f"Gain on each target domain against D_RL, per source (colour) and setting (filled: "
              f"{res.settings[-1]}; hollow: the others), with 90% intervals; lines: gain = "
              f"{FIT_TEXT} where the fit is identified, over the data's range."
              + (" Not identified, data only: " + " | ".join(bad) + "." if bad else ""), made)


def plots(res: Transfer, out: Path) -> list[tuple[str, str]]:
    made: list = []
    if res:
        _matrix(res, out, made)
        if len(res.d_rls) > 1:
            _versus_d(res, out, made)
    return made
