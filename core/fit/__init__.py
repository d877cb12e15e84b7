"""Scaling-law analysis: law forms (``laws``), robust batched fitting (``fit``), bootstrap
intervals and held-out extrapolation (``bootstrap``), and whether a fit is a result at all
(``diagnostics``). No I/O and no plotting here.

A report uses ``estimate`` (fit + bootstrap + identification rules -> ``Assessment``),
``steps_to_fraction`` / ``compute_to_fraction`` for derived quantities, ``across_sizes`` for
laws across model sizes, and ``holdout`` + ``draw_ranges`` for where a curve may be drawn.
"""
from core.fit.bootstrap import (Draws, Holdout, Interval, bootstrap, bootstrap_draws, holdout,
                                holdout_error)
from core.fit.diagnostics import (Assessment, Quantity, across_sizes, assess,
                                  compute_to_fraction, derive, draw_ranges, estimate,
                                  steps_to_fraction)
from core.fit.fit import FitResult, TooFewPoints, fit
from core.fit.laws import LAWS, Law, get_law

__all__ = ["LAWS", "Assessment", "Draws", "FitResult", "Holdout", "Interval", "Law", "Quantity",
           "TooFewPoints", "across_sizes", "assess", "bootstrap", "bootstrap_draws",
           "compute_to_fraction", "derive", "draw_ranges", "estimate", "fit", "get_law",
           "holdout", "holdout_error", "steps_to_fraction"]
