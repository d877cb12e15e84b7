"""The ``competence`` curriculum: competence-based sampling with the square-root schedule.

Platanios et al. 2019, "Competence-based Curriculum Learning for Neural Machine Translation"
(NAACL, pp. 1162-1172, https://aclanthology.org/N19-1119/): a record of difficulty CDF
``d <= c(t)`` may be sampled at step ``t``, with the square-root competence

    c(t) = min(1, sqrt(t * (1 - c0^2) / T + c0^2))

(``c0`` the initial competence, the paper's 0.01; ``T`` the steps to full competence).

Here the pool is sorted by difficulty level, easiest first (``extra_info.difficulty`` 1..4;
ungraded records, level 0, after level 4: unknown difficulty counts as hardest), ties broken
by a seeded order (``random.Random(f"{seed}/competence")`` shuffles the pool before a stable
sort), so the record at rank ``i`` has difficulty CDF ``(i + 1) / D_RL``. Step ``t`` serves
``size`` records drawn uniformly without replacement (``random.Random(f"{seed}/{t}")``) from
the easiest ``m(t) = max(1, ceil(c(t) * D_RL))`` records; when ``m(t) < size`` every one of
them is served, then again in a fresh draw, until ``size`` are served.

A pure function of (seed, step): outcomes change nothing (``online`` is False, so verl takes it
as the parquet order). Options: ``steps_to_full`` (T, an int >= 1, required) and ``c0`` in
(0, 1] (0.01). Records need ``extra_info.difficulty``.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

from core.hookspecs import hookimpl
from core.specs import CurriculumSpec
from plugins.curricula._common import Base, check_known, fail, is_int, is_num, level

DEFAULTS = {"steps_to_full": None, "c0": 0.01}


def competence(t: int, steps_to_full: int, c0: float) -> float:
    """Platanios et al.'s square-root competence at step ``t`` (exactly 1 from ``t = T`` on)."""
    if t >= steps_to_full:
        return 1.0
    return min(1.0, math.sqrt(t * (1 - c0 ** 2) / steps_to_full + c0 ** 2))


class Competence(Base):
    name = "competence"

    def __init__(self, records: Sequence[dict], seed: int = 0, **options) -> None:
        check_known(self.name, options, DEFAULTS)
        super().__init__(records, seed)
        o = {**DEFAULTS, **options}
        if o["steps_to_full"] is None:
            raise ValueError(f"{self.name}: option 'steps_to_full' is required: the step T at "
                             "which the whole pool is in play (an int >= 1)")
        if not (is_int(o["steps_to_full"]) and o["steps_to_full"] >= 1):
            fail(self.name, "steps_to_full", "an int >= 1", o["steps_to_full"])
        if not (is_num(o["c0"]) and 0 < o["c0"] <= 1):
            fail(self.name, "c0", "in (0, 1]", o["c0"])
        self.steps_to_full, self.c0 = o["steps_to_full"], float(o["c0"])
        order = list(range(len(self.records)))
        random.Random(f"{seed}/competence").shuffle(order)
        key = {p: (level(self.records[p]) or math.inf) for p in order}
        self.order = sorted(order, key=key.__getitem__)     # stable: the shuffle breaks ties
        self._last = 0

    def size_at(self, step: int) -> int:
        """How many of the easiest records may be served at ``step``."""
        c = competence(step, self.steps_to_full, self.c0)
        return max(1, math.ceil(c * len(self.records) - 1e-9))

    def batch(self, step: int, size: int) -> list[dict]:
        self._last = step
        prefix = self.order[:self.size_at(step)]
        rng = random.Random(f"{self.seed}/{step}")
        out: list[int] = []
        while len(out) < size:
            out += rng.sample(prefix, min(len(prefix), size - len(out)))
        return [self.records[p] for p in out]

    def update(self, step: int, records, outcomes) -> None:
        """Competence ignores outcomes: c(t) is a function of the step alone."""

    def state_dict(self) -> dict:
        return self._header()

    def load_state_dict(self, state: dict) -> None:
        self._check_state(state)

    def metrics(self) -> dict[str, float]:
        return {"competence": competence(self._last, self.steps_to_full, self.c0)}


@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="competence", factory=Competence,
                         description="Platanios et al. 2019 sqrt competence: easiest c(t) fraction of the pool",
                         options=tuple(DEFAULTS), requires=("difficulty",))
