"""Tables, HTML and parent-run metrics of the ``scaling`` section."""
from __future__ import annotations

import html

import numpy as np

from core.fit import Assessment
from core.fit.bootstrap import fmt
from core.report.draw import short
from core.report.scaling import Scaling, slug
from core.report.tables import Table

FITS = (("sigmoid", "sigmoid: pass@1 vs FLOPs (ScaleRL)", "sigmoid_held"),
        ("power", "power: log(1 - pass@1) = -k log C + E (Tan et al.)", None),
        ("satexp", "saturating exp: pass@1 vs step", "satexp_held"))


def _mean(v) -> str:
    with np.errstate(all="ignore"):
        m = float(np.nanmean(v))
    return f"{m:.3f}" if np.isfinite(m) else "n/a"


def gain_table(res: Scaling) -> Table:
    rows = []
    for g in res.groups:
        gain = g.gain.verdict() if g.gain else f"n/a: {g.gain_note}"
        rows.append((g.name, short(g.x) if g.x is not None else "", str(g.seeds),
                     _mean(g.pass1[:, 0]), _mean(g.pass1[:, -1]), gain,
                     g.gain_note if g.gain else ""))
    return Table(("trials (seeds pooled)", res.grid.x_symbol, "seeds", "pass@1 first eval",
                  "pass@1 last eval", "gain [90% CI over prompts and seeds]", "steps"),
                 tuple(rows), "Pass@1 gain from the first to the last evaluation; the interval "
                 "resamples eval prompts and seeds (per-prompt pass@1 logged by each trial).")


def control_table(res: Scaling) -> Table | None:
    if not res.controls:
        return None
    rows = tuple((c.rl, c.control, "" if c.step is None else str(c.step),
                  c.gain.verdict() if c.gain else f"n/a: {c.note}", c.note if c.gain else "")
                 for c in res.controls)
    return Table(("RL trials", "matched SFT control", "step", "RL - control [90% CI]", "pairs"),
                 rows, "RL's pass@1 over the control that continues SFT for the same steps "
                 "from the same base, paired over seeds and eval prompts.")


def _row(group: str, law: str, a: Assessment, held) -> tuple[str, ...]:
    rmse = f"{a.fit.rmse:.4f}" if a.identified else ""      # no error bar on a non-result
    err = f"{held.error:.4f} (x >= {fmt(held.heldout_x[0])})" if held is not None else ""
    notes = "; ".join(a.notes)
    return (group, law, a.describe() + (f" ({notes})" if notes else ""), rmse, err)


def fits_table(res: Scaling) -> Table:
    rows = []
    for g in res.groups:
        for attr, law, held in FITS:
            rows.append(_row(g.name, law, getattr(g, attr), getattr(g, held) if held else None))
        beyond = g.t90.identified and g.t90.estimate > np.nanmax(g.steps)
        rows.append((g.name, "steps to 90% of the asymptote", g.t90.describe()
                     + (f" (past the last eval, step {fmt(np.nanmax(g.steps))}: extrapolated)"
                        if beyond else ""), "", ""))
    return Table(("trials", "law", "parameters [90% bootstrap interval]", "RMSE",
                  "held-out error (last eval)"), tuple(rows),
                 "Fits per group. A fit is a result only if identified (enough distinct x per "
                 "free parameter, data not constant, no parameter or interval at a search "
                 "bound); fixed parameters are marked (fixed).")


def across_table(res: Scaling) -> Table | None:
    if not res.across:
        return None
    rows = []
    for a in res.across:
        values = ", ".join(f"{fmt(x)}: {q.interval if q.identified else 'not identified'}"
                           for x, q in zip(a.xs, a.quantities))
        rmse = f"{a.fit.fit.rmse:.3g}" if a.fit.identified else ""
        rows.append((a.series or "all", a.quantity, a.law, values, a.fit.describe()
                     + (f" ({'; '.join(a.fit.notes)})" if a.fit.notes else ""), rmse))
    return Table(("series", "quantity", "law across the axis", f"per {res.grid.x_symbol}",
                  "fit [90% interval]", "RMSE"), tuple(rows),
                 f"Laws across {res.grid.x_label}: a x^b, and for model sizes Tan et al.'s "
                 "k(N) = K_max / (1 + N0 / N); bootstrap draws of each group carried into the fit.")


def tables(res: Scaling) -> dict[str, str]:
    out = {"gains": gain_table(res).markdown(), "fits": fits_table(res).markdown()}
    for name, t in (("controls", control_table(res)), ("across", across_table(res))):
        if t is not None:
            out[name] = t.markdown()
    return out


def render(res: Scaling) -> str:
    parts = ["<h3>Pass@1 before and after RL</h3>", gain_table(res).html()]
    if (t := control_table(res)) is not None:
        parts += ["<h3>RL against its matched SFT control</h3>", t.html()]
    parts += ["<h3>Fitted laws (90% bootstrap intervals)</h3>", fits_table(res).html()]
    if (t := across_table(res)) is not None:
        parts += [f"<h3>Across {html.escape(res.grid.x_label)}</h3>", t.html()]
    if res.skipped:
        parts.append("<p>Runs without any evaluation, left out: "
                     + html.escape(", ".join(res.skipped)) + ".</p>")
    return "\n".join(parts)


def interval_metrics(prefix: str, est: float, low: float, high: float) -> dict[str, float]:
    vals = {prefix: est, f"{prefix}_low": low, f"{prefix}_high": high}
    return {k: float(v) for k, v in vals.items() if np.isfinite(v)}


def fit_metrics(prefix: str, a: Assessment, held) -> dict[str, float | str]:
    out: dict[str, float | str] = {f"{prefix}/identified": float(a.identified),
                                   prefix: a.describe()[:5000]}
    if a.identified:
        for p, ci in a.intervals.items():
            if not ci.fixed:
                out.update(interval_metrics(f"{prefix}/{p}", ci.estimate, ci.low, ci.high))
        if held is not None:
            out[f"{prefix}/heldout_error"] = float(held.error)
    return out


def metrics(res: Scaling) -> dict[str, float | str]:
    """``fit/<group>/<law>/<param>`` (+ ``_low``/``_high``) and ``.../identified`` for each
    fit, ``gain/<group>``, ``control/<group>``, ``across/<quantity>/<series>/<param>``; the
    fit's one-line description as a tag ``fit/<group>/<law>``."""
    out: dict[str, float | str] = {}
    for g in res.groups:
        for attr, _, held in FITS:
            out.update(fit_metrics(f"fit/{g.slug}/{attr}", getattr(g, attr),
                                    getattr(g, held) if held else None))
        q = g.t90
        out[f"fit/{g.slug}/steps_to_90/identified"] = float(q.identified)
        if q.identified:
            out.update(interval_metrics(f"fit/{g.slug}/steps_to_90", q.estimate, q.interval.low,
                                 q.interval.high))
        if g.gain:
            out.update(interval_metrics(f"gain/{g.slug}", g.gain.estimate, g.gain.low, g.gain.high))
    for c in res.controls:
        if c.gain:
            out.update(interval_metrics(f"control/{slug(c.rl)}", c.gain.estimate, c.gain.low,
                                 c.gain.high))
    for a in res.across:
        out.update(fit_metrics(f"across/{a.key}/{slug(a.series or 'all')}/{a.law}", a.fit, None))
    return out
