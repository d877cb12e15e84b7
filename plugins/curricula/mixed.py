"""The ``mixed`` curriculum: every difficulty level from the first step, reshuffled each epoch.

Schedule: the pool's positions are served in epochs; epoch ``e`` is the permutation
``random.Random(f"{seed}/{e}").shuffle(range(D_RL))``, and step ``t`` serves the items
``t*size .. (t+1)*size - 1`` of the concatenated epochs. So after ``D_RL / size`` steps every
prompt has been seen once. It is a pure function of (seed, step): outcomes change nothing
(``update`` is a no-op), ``state_dict`` only identifies the pool and seed, and a resumed trial
sees the prompts it would have seen without the stop. No options; records need no fields.
"""
from __future__ import annotations

from collections.abc import Sequence

from core.hookspecs import hookimpl
from core.specs import CurriculumSpec
from plugins.curricula._common import Base, Stream, check_known


class MixedCurriculum(Base):
    name = "mixed"

    def __init__(self, records: Sequence[dict], seed: int = 0, **options) -> None:
        check_known(self.name, options, ())
        super().__init__(records, seed)
        self._stream = Stream(range(len(self.records)), seed)

    def batch(self, step: int, size: int) -> list[dict]:
        return [self.records[self._stream.at(i)] for i in range(step * size, (step + 1) * size)]

    def update(self, step: int, records, outcomes) -> None:
        """Mixed ignores outcomes: its order is a function of (step, seed) alone."""

    def state_dict(self) -> dict:
        return self._header()

    def load_state_dict(self, state: dict) -> None:
        if state:      # checkpoints written before the header existed hold {}
            self._check_state(state)


@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="mixed", factory=MixedCurriculum,
                         description="all difficulties mixed, seeded reshuffle every epoch")
