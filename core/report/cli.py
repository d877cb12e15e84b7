"""``python -m core.report``: the report of a grid run, from its MLflow parent run alone.

    python -m core.report --run-id PARENT_ID [--tracking-uri URI] [--out DIR]
    python -m core.report grid=NAME            # the newest run of that grid
    python -m core.report --run-id ID --table gains     # Markdown for the README

The store is ``--tracking-uri``, else the one recorded in a local ``runs/<grid>/*/grid.json``
for that run, else ``$MLFLOW_TRACKING_URI``, else the project's ``mlflow.db``. The page goes
to ``--out``, else the run's local folder (``runs/<grid>/<stamp>/report``), else
``runs/<grid>/<run-id>/report``. Progress goes to stderr; the page's path (or the tables)
to stdout. Exit status 2: no such run or store, or an unknown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core.report.page import build, progress, write_report
from core.report.runs import load_runs

TABLES = ("gains, fits, controls (RL vs SFT control), across (laws across the axis), findings, rm, "
          "curriculum (curricula at equal compute), transfer (source x target gains), "
          "transfer_data (gain vs D_RL, minimal D_RL), rules (is the N-slope steeper for "
          "complex rules?), rules_plateau, horizon (multi-turn: success and RL gain per "
          "environment, horizon and size), horizon_scaling (gain vs horizon, N-slope per horizon)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit laws to a grid's runs and write report.html (figures, tables, "
                    "findings), logging the grid-level fits and the report on the MLflow "
                    "parent run.",
        epilog="Also accepted, as core.tune writes them: grid=NAME (its newest run) and "
               "output_dir=DIR (where local runs live, default runs/).")
    p.add_argument("--run-id", help="the grid's MLflow parent run id")
    p.add_argument("--grid", help="report the newest run of this grid (same as grid=NAME)")
    p.add_argument("--tracking-uri", help="MLflow store (default: the run's grid.json, "
                   "$MLFLOW_TRACKING_URI, or sqlite:///<project>/mlflow.db)")
    p.add_argument("--out", type=Path, help="folder for report.html and the figures")
    p.add_argument("--table", action="append", metavar="NAME",
                   help=f"print a Markdown table instead of writing the report: {TABLES}, "
                        "or all (repeatable)")
    p.add_argument("--no-log", action="store_true",
                   help="write nothing to MLflow (by default the parent run gets the fits "
                        "as metrics/tags and the report as artifacts)")
    return p


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _local_runs(root: Path, grid: str | None) -> list[tuple[Path, dict]]:
    return [(p.parent, json.loads(p.read_text()))
            for p in sorted(root.glob(f"{grid or '*'}/*/grid.json"))]


def _default_uri() -> str:
    from core.tracking import PROJECT_ROOT
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def _store_missing(uri: str) -> bool:
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()


def _newest_parent(uri: str, grid: str) -> str | None:
    """The newest parent run of a grid in the store (runs tagged with the grid and an
    ``axes`` tag, which only parents carry)."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, filter_string=f"tags.grid = '{grid}'", max_results=1000,
                              order_by=["attributes.start_time DESC"]) if exps else []
    return next((r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags), None)


def runs_root(extra: dict) -> Path:
    from core.config import CONFIG_DIR
    root = Path(extra.get("output_dir", "runs"))
    return root if root.is_absolute() else CONFIG_DIR.parent / root


def resolve(args, extra: dict) -> tuple[str, str, Path | None] | str:
    """(tracking uri, parent run id, local run folder or None), or an error message."""
    root = runs_root(extra)
    grid = args.grid or extra.get("grid")
    local = _local_runs(root, grid)
    if args.run_id:
        local = [s for s in local if s[1]["parent_run_id"] == args.run_id]
    if local:
        run_dir, state = local[-1]
        return args.tracking_uri or state["tracking_uri"], state["parent_run_id"], run_dir
    uri = args.tracking_uri or _default_uri()
    if _store_missing(uri):
        return f"no MLflow store at {uri} (give --tracking-uri or set MLFLOW_TRACKING_URI)"
    if args.run_id:
        return uri, args.run_id, None
    if not grid:
        return "give --run-id ID or grid=NAME (python -m core.report --help)"
    parent = _newest_parent(uri, grid)
    if parent is None:
        return f"no run of grid {grid!r} under {root} nor in {uri}"
    return uri, parent, None


def _tables(uri: str, run_id: str, names: list[str]) -> int:
    parent, runs = load_runs(uri, run_id, progress)
    report = build(parent, runs, None, progress)
    if not report.tables:
        return _fail("no trial of this grid has an evaluation yet: no tables")
    wanted = list(report.tables) if "all" in names else names
    unknown = [n for n in wanted if n not in report.tables]
    if unknown:
        return _fail(f"no table {unknown[0]!r} for this grid; tables: {', '.join(report.tables)}")
    for n in wanted:
        print((f"### {n}\n\n" if len(wanted) > 1 else "") + report.tables[n])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("-"))
    args = parser().parse_args([a for a in argv if not ("=" in a and not a.startswith("-"))])
    found = resolve(args, extra)
    if isinstance(found, str):
        return _fail(found)
    uri, run_id, run_dir = found
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    try:
        parent = MlflowClient(tracking_uri=uri).get_run(run_id)
    except MlflowException as exc:
        return _fail(f"no parent run {run_id!r} in {uri}: {str(exc).splitlines()[0]}")
    if args.table:
        return _tables(uri, run_id, args.table)
    out = args.out or (run_dir / "report" if run_dir else
                       runs_root(extra) / parent.data.tags.get("grid", "grid") / run_id / "report")
    print(write_report(uri, run_id, out=out, log_to_mlflow=not args.no_log))
    return 0
