"""Drawing rules shared by the sections (matplotlib is imported inside the functions).

A fitted curve is drawn only if the fit is identified (``Assessment.identified``); then
solid over the x range of its data, with its 90% bootstrap band, and, where a fit without the
last evaluation was made (``core.fit.holdout``), that fit dashed over the held-out window
(shaded), which lies inside the data: nothing is drawn past the data. A fit that is not
identified is drawn as data only, and its legend entry says "not identified". Fit lines carry
``gid="fit"`` (held-out extrapolations ``gid="extrapolation"``) so tests can look for them.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from core.fit import Assessment, Holdout, draw_ranges
from core.fit.bootstrap import fmt

DPI = 100


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def palette(names, cmap: str = "viridis") -> dict:
    plt = pyplot()
    names = list(names)
    return dict(zip(names, plt.get_cmap(cmap)(np.linspace(0.05, 0.85, max(len(names), 1)))))


def save(fig, out: Path, name: str, caption: str, made: list) -> None:
    fig.tight_layout()
    fig.savefig(Path(out) / name, dpi=DPI)
    pyplot().close(fig)
    made.append((name, caption))


def legend_params(a: Assessment, names: tuple[str, ...]) -> str:
    """``A = 0.81 [0.77, 0.85], B = 1.9 [1.2, 3.1]`` for the named parameters; fixed ones
    as ``R0 = 0.104 (fixed)``; "not identified" when the fit is not a result."""
    if not a.identified:
        return "not identified"
    return ", ".join(f"{p} = {a.intervals[p]}" for p in names if p in a.intervals)


def wrap(text: str, width: int = 90) -> str:
    return "\n".join(textwrap.wrap(text, width))


def curve_x(lo: float, hi: float, log: bool, n: int = 120) -> np.ndarray:
    if log and lo > 0:
        return np.logspace(np.log10(lo), np.log10(hi), n)
    return np.linspace(lo, hi, n)


def draw_fit(ax, a: Assessment, held: Holdout | None, color, log: bool = False,
             label: str | None = None) -> bool:
    """The fitted curve by the rules above; returns whether anything was drawn."""
    if not a.identified or a.fit is None:
        return False
    (lo, hi), _ = draw_ranges(a.fit)
    if log:
        pos = a.fit.x[a.fit.x > 0]
        lo = float(pos.min()) if pos.size else lo
    if not hi > lo:
        return False
    xs = curve_x(lo, hi, log)
    ax.plot(xs, a.fit.predict(xs), "-", color=color, lw=1.6, label=label, gid="fit")
    band_lo, band_hi = a.band(xs)
    if np.isfinite(band_lo).all():
        ax.fill_between(xs, band_lo, band_hi, color=color, alpha=0.12, lw=0)
    if held is not None:
        (_, _), window = draw_ranges(held.fit, held)
        if window is not None:
            wx = curve_x(window[0], window[1], log, 40)
            ax.axvspan(window[0], window[1], color="0.9", zorder=0)
            ax.plot(wx, held.fit.predict(wx), "--", color=color, lw=1.2, gid="extrapolation")
    return True


def empty_panel(ax, text: str) -> None:
    """A panel that says why it has nothing to show."""
    ax.text(0.5, 0.5, wrap(text, 60), ha="center", va="center", fontsize=8,
            transform=ax.transAxes, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def set_axis(ax, xs, log_ok: bool = True) -> None:
    """Log scale for positive numbers spanning over 8x."""
    xs = np.asarray([x for x in xs if isinstance(x, float) and np.isfinite(x)], float)
    if log_ok and xs.size and (xs > 0).all() and xs.max() / xs.min() > 8:
        log_x(ax)


def log_x(ax) -> None:
    """Log x axis with labels on the decades only (minor labels overlap on short spans)."""
    from matplotlib.ticker import NullFormatter
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def positions(values: list) -> tuple[list[float], list[str] | None]:
    """x positions for axis values: the numbers themselves, or 0..n-1 with tick labels."""
    if all(isinstance(v, float) for v in values):
        return list(values), None
    labels = list(dict.fromkeys(str(v) for v in values))
    return [float(labels.index(str(v))) for v in values], labels


def errorbar(ax, x, q, color, label=None, hollow: bool = False) -> None:
    """A point with its interval (a Quantity or a Gain)."""
    est, lo, hi = q.estimate, getattr(q, "low", None), getattr(q, "high", None)
    if lo is None:
        lo, hi = q.interval.low, q.interval.high
    yerr = [[max(0.0, est - lo) if np.isfinite(lo) else 0.0],
            [max(0.0, hi - est) if np.isfinite(hi) else 0.0]]
    ax.errorbar([x], [est], yerr=yerr, fmt="o", color=color, capsize=3, label=label,
                mfc="white" if hollow else color)


def short(v) -> str:
    return fmt(v) if isinstance(v, float) else str(v)
