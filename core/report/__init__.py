"""The grid report: read a grid's runs back from MLflow, fit laws with the identification
rules of ``core.fit``, draw, and write ``report.html``; log the grid-level results and the
report on the parent run.

The report is a list of sections (``core.report.section.Section``: analyse / plots / html /
metrics / tables), registered by name in ``core.report.sections``; each grid names its own in
``grid.report``. ``python -m core.report --help`` for the command line; the grid driver calls
``write_report`` at the end of every grid.
"""
from core.report.cli import main
from core.report.page import Report, build, write_report
from core.report.runs import GridView, grid_view, load_runs
from core.report.section import Section
from core.report.sections import SECTIONS, get_section, register

__all__ = ["SECTIONS", "GridView", "Report", "Section", "build", "get_section", "grid_view",
           "load_runs", "main", "register", "write_report"]
