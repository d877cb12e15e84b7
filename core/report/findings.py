"""The ``findings`` section: one sentence per question the grid can answer, each computed
from the fits (or measured differences) with its 90% interval, and "inside the noise" when
the interval contains 0. It reads the results of ``scaling`` (and ``rm`` when present).

Questions asked, where the grid has what they need:

- Does the far end of the grid's axis end higher than the near end? The fitted ceilings A
  (sigmoid, else the saturating exponential's asymptote) of the two ends; where neither is
  identified, the measured last-eval pass@1 of the two ends (bootstrap over seeds and prompts).
- What did RL gain per group (step 0 to the last eval), and over its matched SFT control?
- Is the law across the axis identified (the exponent b of A(x) = a x^b, Tan et al.'s k(N))?
- Does the far end need more or fewer steps to 90% of its asymptote?
- Reward models: is the gold reward's curvature b (Gao et al.) above 0?
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from core.report.draw import short
from core.report.scaling import Group, Scaling, param, slug
from core.report.scaling_html import interval_metrics
from core.report.stats import Gain, group_difference, quantity_difference
from core.report.tables import Table


@dataclass(frozen=True, eq=False)
class Finding:
    key: str                 # metric key: finding/<key>
    question: str
    sentence: str
    value: Gain | None = None


def _ends(res: Scaling) -> list[tuple[str, Group, Group]]:
    """(series, near end, far end) of the RL groups along the axis, per series."""
    out = []
    rl = [g for g in res.groups if g.algorithm != "sft"]
    for series in dict.fromkeys(g.series for g in rl):
        members = [g for g in rl if g.series == series]
        if len(members) >= 2:
            out.append((series, members[0], members[-1]))
    return out


def _last_evals(g: Group) -> np.ndarray | None:
    steps = set.intersection(*(set(r["evals"]) for r in g.runs)) if g.runs else set()
    if not steps:
        return None
    rows = [r["evals"][max(steps)] for r in g.runs]
    return np.array(rows) if len({len(r) for r in rows}) == 1 else None


def _say(gain: Gain | None, lead: str, up: str, down: str) -> str:
    if gain is None:
        return lead
    if gain.inside_noise:
        return f"{lead} = {gain}: inside the noise"
    return f"{up if gain.estimate > 0 else down}: {lead} = {gain}"


def _tag(series: str) -> str:
    return f" ({series})" if series else ""


def _plain(gain: Gain, lead: str) -> str:
    return f"{lead}: {gain}" + (", inside the noise" if gain.inside_noise else "")


def _compare(res: Scaling, near: Group, far: Group) -> tuple[str, str, str]:
    """(x of the far end, x of the near end, subject): "larger N" along a numeric axis,
    "curriculum=easy_to_hard (vs mixed)" along a text axis."""
    sym = res.grid.x_symbol
    a, b = (short(g.x if g.x is not None else g.name) for g in (far, near))
    numeric = isinstance(far.x, float) and isinstance(near.x, float)
    return a, b, (f"larger {sym}" if numeric else f"{sym}={a} (vs {b})")


def _ceiling(res: Scaling, series: str, near: Group, far: Group) -> Finding:
    a, b, subject = _compare(res, near, far)
    q = f"Does {'a ' if subject.startswith('larger') else ''}{subject} end higher{_tag(series)}?"
    key = f"ends_higher/{slug(series or 'all')}"
    up, down = f"{subject} ends higher", f"{subject} ends lower"
    for attr, law in (("sigmoid", ""), ("satexp", " of pass@1 vs step (saturating exp.)")):
        diff = quantity_difference(param(getattr(far, attr), "A"), param(getattr(near, attr), "A"))
        if diff is not None:
            return Finding(key, q, _say(diff, f"A({a}) - A({b}){law}", up, down), diff)
    why = "; ".join(f"{name}: {getattr(g, attr).reasons[0]}" for name, attr in
                    (("sigmoid", "sigmoid"), ("saturating exp.", "satexp"))
                    for g in (far, near) if getattr(g, attr).reasons)[:600]
    fe, ne = _last_evals(far), _last_evals(near)
    if fe is None or ne is None:
        return Finding(key, q, f"cannot tell: the ceilings are not identified ({why}) and "
                       "no per-prompt evaluations were logged")
    diff = group_difference(fe, ne)
    return Finding(key, q, _say(diff, f"last-eval pass@1({a}) - pass@1({b})", up, down)
                   + f" (measured; the fitted ceilings are not identified: {why})", diff)


def _gains(res: Scaling) -> list[Finding]:
    out, controlled = [], {c.rl for c in res.controls if c.gain is not None}
    for g in res.groups:
        if g.algorithm == "sft":
            continue
        lead = f"RL gain in pass@1 ({g.gain_note}) for {g.label}"
        s = _plain(g.gain, lead) if g.gain else f"{lead}: not measured ({g.gain_note})"
        if g.gain and g.name not in controlled:
            s += ("; no matched SFT control here (rl.algorithm=sft), so this is not yet a gain "
                  "due to RL alone")
        out.append(Finding(f"gain/{g.slug}", f"Did RL raise pass@1 for {g.label}?", s, g.gain))
    for c in res.controls:
        lead = f"RL gain over the SFT control for {c.rl}"
        s = _plain(c.gain, lead) if c.gain else f"{lead}: not measured ({c.note})"
        out.append(Finding(f"control/{slug(c.rl)}",
                           f"Does RL beat SFT continued for the same steps ({c.rl})?", s, c.gain))
    return out


def _laws(res: Scaling) -> list[Finding]:
    out, sym = [], res.grid.x_symbol
    n = len({g.x for g in res.groups if g.algorithm != "sft"})
    for a in res.across:
        param_name = "K_max" if a.law == "k_of_n" else "b"
        what = (f"Tan et al.'s K_max of k({sym}) = K_max / (1 + N0 / {sym})" if a.law == "k_of_n"
                else f"the cross-{sym} exponent b of {a.quantity} = a {sym}^b")
        q = f"Is there a law across {sym} for {a.quantity}{_tag(a.series)}?"
        key = f"law/{a.key}/{slug(a.series or 'all')}"
        if not a.fit.identified:
            out.append(Finding(key, q, f"{what} is not identified with {n} values of {sym}: "
                               + "; ".join(a.fit.reasons + a.fit.notes)))
            continue
        ci = a.fit.intervals[param_name]
        draws = a.fit.draws.column(param_name) if a.fit.draws is not None else np.empty(0)
        gain = Gain(ci.estimate, ci.low, ci.high, draws)
        out.append(Finding(key, q, f"{what}: {param_name} = {ci}", gain))
    return out


def _steps(res: Scaling, series: str, near: Group, far: Group) -> Finding:
    a, b, subject = _compare(res, near, far)
    q = (f"Does {'a ' if subject.startswith('larger') else ''}{subject} need more steps to 90% "
         f"of its asymptote{_tag(series)}?")
    key = f"steps_to_90/{slug(series or 'all')}"
    diff = quantity_difference(far.t90, near.t90)
    if diff is None:
        bad = [f"{g.label}: {'; '.join(g.t90.reasons)}" for g in (near, far)
               if not g.t90.identified]
        return Finding(key, q, "not identified: " + " | ".join(bad))
    past = [g.label for g in (near, far) if g.t90.estimate > np.nanmax(g.steps)]
    note = (f" (past the last evaluation, extrapolated, for {', '.join(past)})" if past else "")
    return Finding(key, q, _say(diff, f"t90({a}) - t90({b})", f"{subject} needs more steps",
                                f"{subject} needs fewer steps") + note, diff)


def _rm(rm: dict) -> list[Finding]:
    out = []
    for name, g in rm.items():
        q = f"Does the gold reward turn down as the policy moves away ({name})?"
        if not g.gold_fit.identified:
            out.append(Finding(f"rm/{slug(name)}", q, "the gold fit is not identified: "
                               + "; ".join(g.gold_fit.reasons)))
            continue
        ci = g.gold_fit.intervals["b"]
        gain = Gain(ci.estimate, ci.low, ci.high, g.gold_fit.draws.column("b"))
        out.append(Finding(f"rm/{slug(name)}", q, _say(
            gain, "gold-reward curvature b of d(a - b log d)",
            "yes, gold reward turns down (b > 0)", "no, gold reward keeps rising (b < 0)"), gain))
    return out


def analyse(runs: list[dict], grid) -> list[Finding]:
    res: Scaling | None = grid.results.get("scaling")
    out: list[Finding] = []
    if res is not None and res.groups:
        ends = _ends(res)
        out += [_ceiling(res, *e) for e in ends]
        out += _gains(res)
        out += _laws(res)
        out += [_steps(res, *e) for e in ends]
    rm = grid.results.get("rm")
    out += _rm(rm.groups if rm else {})
    return out


def table(findings: list[Finding]) -> Table:
    return Table(("question", "finding [90% interval]"),
                 tuple((f.question, f.sentence) for f in findings))


def render(findings: list[Finding]) -> str:
    if not findings:
        return "<p>No question this grid can answer yet.</p>"
    items = "".join(f"<li><b>{html.escape(f.question)}</b> {html.escape(f.sentence)}</li>"
                    for f in findings)
    return f"<ul class=findings>{items}</ul>"


def tables(findings: list[Finding]) -> dict[str, str]:
    return {"findings": table(findings).markdown()}


def metrics(findings: list[Finding]) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for f in findings:
        out[f"finding/{f.key}"] = f.sentence[:5000]
        if f.value is not None:
            out.update(interval_metrics(f"finding/{f.key}/value", f.value.estimate, f.value.low,
                                        f.value.high))
    return out
