"""The registry of report sections, by name. A grid names the ones it wants in
``grid.report`` (its YAML); the report runs them in that order."""
from __future__ import annotations

from core.report import (curriculum, curriculum_html, findings, horizon, rm, rules, scaling,
                         scaling_html, scaling_plots, transfer, transfer_html)
from core.report.section import Section

SECTIONS: dict[str, Section] = {}


def register(section: Section) -> None:
    """Add a section; a second section of one name is an error (nothing is overwritten)."""
    if section.name in SECTIONS:
        raise ValueError(f"report section {section.name!r} is registered twice")
    SECTIONS[section.name] = section


def get_section(name: str) -> Section:
    if name not in SECTIONS:
        raise KeyError(f"unknown report section {name!r}; valid sections: {', '.join(SECTIONS)}")
    return SECTIONS[name]


register(Section("findings", "Findings", findings.analyse, findings.render,
                 metrics=findings.metrics, tables=findings.tables, needs=("scaling", "rm"),
                 applies=lambda result: True))
register(Section("scaling", "Pass@1 and pass@k against steps, compute and the grid's axis",
                 scaling.analyse, scaling_html.render, scaling_plots.plots, scaling_html.metrics,
                 scaling_html.tables))
register(Section("rm", "Reward-model over-optimisation (Gao et al.)", rm.analyse, rm.html,
                 rm.plots, rm.metrics, rm.tables))
register(Section("curriculum", "Curricula against mixed training at equal compute",
                 curriculum.analyse, curriculum_html.render, curriculum_html.plots,
                 curriculum_html.metrics, curriculum_html.tables))
register(Section("transfer", "Domain transfer: RL on one domain, gains on every domain",
                 transfer.analyse, transfer_html.render, transfer_html.plots,
                 transfer_html.metrics, transfer_html.tables))
register(Section("rules", "Rule complexity against model size", rules.analyse, rules.html,
                 rules.plots, rules.metrics, rules.tables))
register(Section("horizon", "Multi-turn environments: RL gain against the horizon",
                 horizon.analyse, horizon.html, horizon.plots, horizon.metrics, horizon.tables))
