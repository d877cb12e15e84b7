"""Rule verifiers for the synthetic tasks (``plugins/datasets/synthetic.py``).

A response is well formed when it contains the final-answer marker ``#`` followed by an answer
of the domain's alphabet (digits for ``arith`` / ``sort`` / ``mul`` / ``max`` / ``pad``, letters
for ``rev`` / ``rot``). Format and
correctness are scored separately:

- ``format``: 1.0 if well formed, else 0.0
- ``acc``:    1.0 if the answer after the last marker equals the ground truth, else 0.0
- ``score``:  ``acc`` plus ``format_weight * format`` (``format_weight=0`` gives plain
  correctness; that is the default and what pass@k counts)
"""
from __future__ import annotations

import re

from core.hookspecs import hookimpl
from core.protocols import Score
from core.specs import RewardSpec

MARKER = "#"
_ALPHABET = {"arith": r"-?\d+", "sort": r"\d+", "rev": r"[a-z]+", "mul": r"\d+", "max": r"\d+",
             "rot": r"[a-z]+",
             "pad": r"\d+"}


def extract(response: str) -> str | None:
    """The text after the last final-answer marker, stripped; None when there is no marker."""
    if MARKER not in response:
        return None
    return response.rsplit(MARKER, 1)[1].strip()


def score_response(data_source: str, response: str, ground_truth: str,
                   format_weight: float = 0.0) -> Score:
    domain = data_source.split("__", 1)[-1]
    if domain not in _ALPHABET:
        raise ValueError(f"synthetic verifier cannot score data_source {data_source!r}; "
                         f"allowed: {', '.join('synthetic__' + d for d in _ALPHABET)}")
    pred = extract(response)
    well_formed = pred is not None and re.fullmatch(_ALPHABET[domain], pred) is not None
    acc = float(well_formed and pred == ground_truth)
    fmt = float(well_formed)
    return Score(score=acc + format_weight * fmt, acc=acc, format=fmt, pred=pred)


class SyntheticVerifier:
    """The reward protocol (``core.protocols.Reward``): ``score_batch(items) -> [Score]``; also
    callable on one response: ``verifier(data_source, response, ground_truth) -> Score``."""

    score_one = staticmethod(score_response)    # a subclass with the same contract sets its own

    def __init__(self, format_weight: float = 0.0) -> None:
        self.format_weight = format_weight

    def __call__(self, data_source: str, response: str, ground_truth: str,
                 extra_info: dict | None = None) -> Score:
        return self.score_one(data_source, response, ground_truth, self.format_weight)

    def score_batch(self, items) -> list[Score]:
        return [self.score_one(ds, resp, gt, self.format_weight) for ds, resp, gt, *_ in items]


@hookimpl
def agentic_rl_rewards():
    yield RewardSpec(
        name="synthetic", factory=SyntheticVerifier, kind="rule",
        data_sources=("synthetic__",),
        description="exact-match verifier for the synthetic tasks, format scored separately")
