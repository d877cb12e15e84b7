"""Run a grid's sections and write ``report.html`` with its figures; log the grid-level
results (metrics and tags) and the report (artifacts) on the parent run."""
from __future__ import annotations

import dataclasses
import html
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.report.runs import GridView, grid_view, has_evals, load_runs
from core.report.sections import get_section

STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top;font-size:90%}caption{caption-side:bottom;text-align:left;
color:#555;font-size:85%}figure{display:inline-block;margin:1em;vertical-align:top;max-width:
540px}img{max-width:100%}figure.wide{max-width:100%}figcaption{font-size:85%;color:#333}
ul.findings li{margin:0.4em 0}"""


def progress(msg: str) -> None:
    print(f"[report] {msg}", file=sys.stderr, flush=True)


@dataclass
class Report:
    path: Path | None                     # report.html (None when only tables were asked for)
    metrics: dict[str, float | str]       # for the parent run: numbers -> metrics, text -> tags
    tables: dict[str, str]                # markdown, by name
    results: dict[str, Any]


def _order(names: tuple[str, ...]) -> list[str]:
    """Sections to analyse: the named ones, each after the sections it needs."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name not in done:
            for dep in get_section(name).needs:
                visit(dep)
            done.append(name)
    for n in names:
        visit(n)
    return done


def analyse(runs: list[dict], grid: GridView, log: Callable[[str], None] = progress) -> dict:
    results: dict[str, Any] = {}
    for name in _order(grid.sections):
        t0 = time.time()
        view = dataclasses.replace(grid, results=dict(results))
        results[name] = get_section(name).analyse(runs, view)
        log(f"analysed {name} ({time.time() - t0:.1f}s)")
    return results


def _figures(figs: list[tuple[str, str]]) -> str:
    return "".join(f"<figure{' class=wide' if n.startswith(('passk', 'ceiling', 'rm_')) else ''}>"
                   f"<a href='{n}'><img src='{n}' alt='{n}'></a><figcaption>{html.escape(c)}"
                   "</figcaption></figure>" for n, c in figs)


def _header(grid: GridView, runs: list[dict]) -> str:
    axes = ", ".join(grid.axes) or "none"
    return (f"<h1>Grid <code>{html.escape(grid.name)}</code></h1><p>MLflow parent run "
            f"<code>{html.escape(grid.parent_id)}</code>; git commit <code>"
            f"{html.escape(grid.tags.get('git_commit', '?'))}</code>; {len(runs)} trial(s); axes: "
            f"{html.escape(axes)}; plots against {html.escape(grid.x_label)}. \"Creativity "
            "index\" is pass@k_max (not ProRL's n-gram measure); pass@k uses the unbiased "
            "estimator of Chen et al.; intervals are 90% bootstrap intervals.</p>")


def _empty(grid: GridView, runs: list[dict]) -> str:
    if not runs:
        why = "it has no child runs: no trial has started"
    else:
        states = ", ".join(f"{r['name']} ({r.get('status', '?')})" for r in runs)
        why = f"none of its {len(runs)} trial(s) has an evaluation yet: {states}"
    return (f"<h2>No finished trial</h2><p>Nothing to report for this grid yet: {html.escape(why)}."
            " Run the report again when trials have evaluated.</p>")


def build(parent: dict, runs: list[dict], out: Path | None,
          log: Callable[[str], None] = progress) -> Report:
    """Analyse, draw (into ``out``; None: no files) and assemble the page."""
    grid = grid_view(parent, runs)
    body, metrics, tables = [_header(grid, runs)], {}, {}
    results: dict[str, Any] = {}
    if not any(has_evals(r) for r in runs):
        body.append(_empty(grid, runs))
    else:
        results = analyse(runs, grid, log)
        for name in grid.sections:
            section, result = get_section(name), results[name]
            if not section.applies(result):
                continue
            metrics.update(section.metrics(result))
            tables.update(section.tables(result))
            figs = []
            if out is not None:
                t0 = time.time()
                figs = section.plots(result, out)
                log(f"drew {len(figs)} figure(s) for {name} ({time.time() - t0:.1f}s)")
            body.append(f"<section id='{name}'><h2>{html.escape(section.title)}</h2>"
                        f"{section.html(result)}{_figures(figs)}</section>")
    path = None
    if out is not None:
        path = Path(out) / "report.html"
        path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>grid "
                        f"{html.escape(grid.name)}</title><style>{STYLE}</style></head><body>"
                        + "\n".join(body) + "</body></html>")
    return Report(path, metrics, tables, results)


def log_to_parent(client, parent_id: str, report: Report, out: Path) -> None:
    """Grid-level results on the parent run: numbers as metrics, text as tags; the report
    folder as artifacts under ``report/``."""
    import math

    from mlflow.entities import Metric, RunTag
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in report.metrics.items()
               if isinstance(v, float) and math.isfinite(v)]
    tags = [RunTag(k, str(v)[:5000]) for k, v in report.metrics.items() if isinstance(v, str)]
    for i in range(0, len(metrics), 1000):          # MLflow's limits per batch
        client.log_batch(parent_id, metrics=metrics[i:i + 1000])
    for i in range(0, len(tags), 100):
        client.log_batch(parent_id, tags=tags[i:i + 100])
    client.log_artifacts(parent_id, str(out), artifact_path="report")


def write_report(uri: str, parent_id: str, run_dir: Path | None = None, *,
                 out: Path | None = None, log_to_mlflow: bool = True,
                 log: Callable[[str], None] = progress) -> Path:
    """Read the grid's runs from MLflow, write ``<run_dir>/report/report.html`` (or into
    ``out``) with its figures, and log results and files on the parent run. A grid without
    any evaluated trial gets a page that says so. Returns the page's path."""
    t0 = time.time()
    log(f"reading parent run {parent_id} from {uri}")
    parent, runs = load_runs(uri, parent_id, log)
    log(f"read {len(runs)} run(s) ({time.time() - t0:.1f}s)")
    out = Path(out) if out is not None else Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = build(parent, runs, out, log)
    if log_to_mlflow:
        from mlflow.tracking import MlflowClient
        log_to_parent(MlflowClient(tracking_uri=uri), parent_id, report, out)
        log(f"logged {len(report.metrics)} grid-level value(s) and the report on the parent run")
    log(f"done in {time.time() - t0:.1f}s: {report.path}")
    return report.path
