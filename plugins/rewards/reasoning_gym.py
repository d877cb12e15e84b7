"""Rule verifier for the reasoning-gym tasks (``plugins/datasets/reasoning_gym.py``).

A response is well formed when it holds the final-answer marker ``#`` followed by a non-empty
answer in the task's alphabet; ``acc`` is an exact match of that answer (stripped) with the
ground truth. The check is exact by design: the library's own ``score_answer`` gives partial
credit to some near misses (``word_sorting``: right words in the wrong order 0.2; fractions
that are not reduced 0.1), which pass@k must not count. Every ground truth the dataset writes
scores 1.0 under the library's ``score_answer`` too (tested), so the two agree on what is right.
No import of the library here: verl's reward workers stay light.

- ``format``: 1.0 if well formed, else 0.0
- ``acc``:    1.0 if the answer after the last marker equals the ground truth, else 0.0
- ``score``:  ``acc + format_weight * format``
"""
from __future__ import annotations

import re

from core.hookspecs import hookimpl
from core.protocols import Score
from core.specs import RewardSpec
from plugins.rewards.synthetic import MARKER, SyntheticVerifier, extract  # noqa: F401 (MARKER re-exported)

PREFIX = "rg__"
_ALPHABET = {"chain_sum": r"-?\d+", "products": r"\d+", "lcm": r"\d+",
             "word_sorting": r"\w+(,\w+)*", "base_conversion": r"[0-9a-z]+",
             "fraction_simplification": r"\d+/\d+"}


def score_response(data_source: str, response: str, ground_truth: str,
                   format_weight: float = 0.0) -> Score:
    task = data_source[len(PREFIX):] if data_source.startswith(PREFIX) else None
    if task not in _ALPHABET:
        raise ValueError(f"reasoning_gym verifier cannot score data_source {data_source!r}; "
                         f"allowed: {', '.join(PREFIX + t for t in _ALPHABET)}")
    pred = extract(response)
    well_formed = bool(pred) and re.fullmatch(_ALPHABET[task], pred) is not None
    acc = float(well_formed and pred == str(ground_truth).strip())
    fmt = float(well_formed)
    reason = ("correct" if acc else "wrong answer" if well_formed
              else "no '#' marker" if pred is None else "malformed answer")
    return Score(score=acc + format_weight * fmt, acc=acc, format=fmt, pred=pred, reason=reason)


class ReasoningGymVerifier(SyntheticVerifier):
    """The reward protocol (``core.protocols.Reward``) as the synthetic verifier gives it
    (``score_batch``, and callable on one response), scoring with this module's rule."""

    score_one = staticmethod(score_response)


@hookimpl
def agentic_rl_rewards():
    yield RewardSpec(
        name="reasoning_gym", factory=ReasoningGymVerifier, kind="rule", data_sources=(PREFIX,),
        description="exact-match verifier for the reasoning-gym tasks, format scored separately")
