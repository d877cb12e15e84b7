"""Scaling-law analysis: law forms (``laws``), robust fitting (``fit``) and bootstrap
intervals and held-out extrapolation (``bootstrap``). No I/O and no plotting here."""
from core.fit.bootstrap import Interval, bootstrap, holdout_error
from core.fit.fit import FitResult, fit
from core.fit.laws import LAWS, Law, get_law

__all__ = ["LAWS", "FitResult", "Interval", "Law", "bootstrap", "fit", "get_law", "holdout_error"]
