"""The ``mixed`` curriculum: every difficulty level from the first step, reshuffled each epoch.

A curriculum is an object with ``batch(step, size) -> list[record]``: the RL prompts the
trainer sees at ``step``. ``mixed`` draws them without replacement from a seeded permutation
of the whole RL pool (D_RL prompts) and starts a fresh permutation when one runs out, so
after ``D_RL / size`` steps every prompt has been seen once. It is a pure function of
(step, seed): a resumed trial sees the same prompts it would have seen without the stop.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from core.hookspecs import hookimpl
from core.specs import CurriculumSpec


class MixedCurriculum:
    def __init__(self, records: Sequence[dict], seed: int = 0) -> None:
        if not records:
            raise ValueError("mixed curriculum: the RL pool is empty (data.d_rl = 0?)")
        self.records = list(records)
        self.seed = seed
        self._order: tuple[int, list[int]] | None = None   # (epoch, permutation), memoised

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._order is None or self._order[0] != epoch:
            order = list(range(len(self.records)))
            random.Random(f"{self.seed}/{epoch}").shuffle(order)
            self._order = (epoch, order)
        return self._order[1]

    def update(self, step: int, records, outcomes) -> None:
        """Mixed ignores outcomes: its order is a function of (step, seed) alone."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None

    def batch(self, step: int, size: int) -> list[dict]:
        start = step * size
        out = []
        for pos in range(start, start + size):
            epoch, offset = divmod(pos, len(self.records))
            out.append(self.records[self._epoch_order(epoch)[offset]])
        return out


@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="mixed", factory=MixedCurriculum,
                         description="all difficulties mixed, seeded reshuffle every epoch")
