"""The ``online_filter`` curriculum: DAPO dynamic sampling plus retirement of solved prompts.

Schedule. Prompts come from one seeded stream over the pool (epochs of permutations, see
``_common.Stream``), passing over retired prompts. A step rolls out rounds:

1. ``batch(t, size)``: the next ``size`` prompts (round 0).
2. ``filter(t, records, outcomes)``: the indices of the informative groups: a group is dropped
   when it has >= 2 samples and all of them share one value of ``filter_on`` (the reward, or
   correctness); such a group's GRPO advantages are all 0 (DAPO, Yu et al. 2025, arXiv
   2503.14476, "dynamic sampling"; verl's ``algorithm.filter_groups``). Groups of one sample
   are kept, as verl keeps them.
3. While fewer than ``size`` groups were kept: ``refill(t, missing)`` serves the next
   ``ceil(refill_factor * missing)`` prompts, or ``[]`` once ``max_refill_rounds`` refills were
   served this step; each refill round is rolled out and filtered like round 0.
4. The step trains on the kept groups in the order served (the first ``size``; later ones are
   surplus); when the refills ran out first it is topped up to ``size`` with dropped groups in
   the order served (zero advantage, so the batch keeps its shape and carries no extra signal).
5. ``update(t, records, outcomes)`` with every round's records and outcomes: a prompt whose
   latest group's pass rate (correct samples / samples) is >= ``retire_at`` is retired for good
   (ScaleRL's No-Positive-Resampling, Khatri et al. 2025, arXiv 2510.13786, which drops
   prompts at pass rate >= 0.9 from later epochs). Prompts are matched by ``core.grading.prompt_key``
   (data source and prompt), so copies of a record count. If every prompt is retired, serving
   raises.

Trainer protocol (the extension to ``core.protocols.Curriculum``; a curriculum that has no
``filter`` / ``refill`` is a plain one: one round, every group kept). A trainer drives a step
with ``StepRounds``, the same for every curriculum::

    rounds = StepRounds(curriculum, step, size)   # step 0-based, size = rl.prompts_per_step
    todo = rounds.first()                         # calls curriculum.batch(step, size)
    while todo:
        outcomes = rollout_and_score(todo)        # G samples per record, Outcome.record_index
        todo = rounds.add(todo, outcomes)         #   indexes into todo; filter, maybe refill
    chosen = rounds.finish()                      # calls curriculum.update(step, all, all)
    # train on the groups chosen[k] = (round, index into that round's records)
    # log rounds.stats as train/<key> (train/filtered_groups, ...); count the FLOPs of every
    # round's rollouts; checkpoint curriculum.state_dict() after finish(), never mid-step

``rounds.stats``: ``rounds`` (rollout rounds, 1 without refill), ``served_prompts`` (prompts
rolled out, every round), ``filtered_groups`` (groups dropped by the filter), ``topped_up``
(dropped groups trained on to fill the batch), ``surplus_groups`` (kept groups beyond
``size``), ``extra_prompts`` (``served_prompts`` minus the groups trained on: their G rollouts
each are compute spent on filtering; count their FLOPs in ``compute/flops_rollout``).

Options (defaults): ``max_refill_rounds`` int >= 0 (3), ``refill_factor`` number >= 1 (2.0,
verl's sync DAPO refills 2k for k dropped), ``retire_at`` in (0, 1] or null = never (0.9),
``filter_on`` ``reward`` | ``correct`` (``reward``). ``online`` is True. Records need only
``data_source`` and ``prompt`` (every record has them).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from core.grading import prompt_key
from core.hookspecs import hookimpl
from core.protocols import Outcome
from core.rounds import StepRounds  # noqa: F401  (the trainer's loop; re-exported for plugin authors)
from core.specs import CurriculumSpec
from plugins.curricula._common import Base, Stream, check_known, fail, is_int, is_num

DEFAULTS = {"max_refill_rounds": 3, "refill_factor": 2.0, "retire_at": 0.9, "filter_on": "reward"}


class OnlineFilter(Base):
    name = "online_filter"
    online = True

    def __init__(self, records: Sequence[dict], seed: int = 0, **options) -> None:
        check_known(self.name, options, DEFAULTS)
        super().__init__(records, seed)
        o = {**DEFAULTS, **options}
        if not (is_int(o["max_refill_rounds"]) and o["max_refill_rounds"] >= 0):
            fail(self.name, "max_refill_rounds", "an int >= 0", o["max_refill_rounds"])
        if not (is_num(o["refill_factor"]) and o["refill_factor"] >= 1):
            fail(self.name, "refill_factor", "a number >= 1", o["refill_factor"])
        if o["retire_at"] is not None and not (is_num(o["retire_at"]) and 0 < o["retire_at"] <= 1):
            fail(self.name, "retire_at", "in (0, 1] or null", o["retire_at"])
        if o["filter_on"] not in ("reward", "correct"):
            fail(self.name, "filter_on", "'reward' or 'correct'", o["filter_on"])
        self.max_refill_rounds, self.refill_factor = o["max_refill_rounds"], float(o["refill_factor"])
        self.retire_at, self.filter_on = o["retire_at"], o["filter_on"]
        self._stream = Stream(range(len(self.records)), seed, "online")
        self._where: dict[str, list[int]] = {}       # prompt key -> pool positions
        for p, r in enumerate(self.records):
            self._where.setdefault(prompt_key(r), []).append(p)
        self.retired: set[int] = set()
        self._step, self._refills = -1, 0

    def _serve(self, n: int) -> list[dict]:
        try:
            return [self.records[p] for p in self._stream.take(n, self.retired)]
        except RuntimeError:
            raise RuntimeError(f"{self.name}: all {len(self.records)} prompts are retired (pass rate "
                               f">= retire_at={self.retire_at}); nothing is left to serve") from None

    def batch(self, step: int, size: int) -> list[dict]:
        self._step, self._refills = step, 0
        return self._serve(size)

    def filter(self, step: int, records: Sequence[dict], outcomes: Sequence[Outcome]) -> list[int]:
        values: list[set] = [set() for _ in records]
        counts = [0] * len(records)
        for o in outcomes:
            values[o.record_index].add(float(o.reward) if self.filter_on == "reward" else bool(o.correct))
            counts[o.record_index] += 1
        return [i for i in range(len(records)) if not (counts[i] >= 2 and len(values[i]) == 1)]

    def refill(self, step: int, missing: int) -> list[dict]:
        if step != self._step:
            raise ValueError(f"{self.name}: refill({step}, ...) before batch({step}, ...)")
        if missing <= 0 or self._refills >= self.max_refill_rounds:
            return []
        self._refills += 1
        return self._serve(math.ceil(self.refill_factor * missing))

    def update(self, step: int, records: Sequence[dict], outcomes: Sequence[Outcome]) -> None:
        if self.retire_at is None:
            return
        correct, total = [0] * len(records), [0] * len(records)
        for o in outcomes:
            correct[o.record_index] += bool(o.correct)
            total[o.record_index] += 1
        latest: dict[str, float] = {}      # a prompt served twice in a step: its later group
        for i, r in enumerate(records):
            if total[i]:
                latest[prompt_key(r)] = correct[i] / total[i]
        for key, rate in latest.items():
            if rate >= self.retire_at:
                self.retired.update(self._where.get(key, ()))

    def state_dict(self) -> dict:
        return {**self._header(), "cursor": self._stream.cursor, "retired": sorted(self.retired),
                "step": self._step, "refills": self._refills}

    def load_state_dict(self, state: dict) -> None:
        self._check_state(state)
        self._stream.cursor = int(state["cursor"])
        self.retired = {int(p) for p in state["retired"]}
        self._step, self._refills = int(state["step"]), int(state["refills"])

    def metrics(self) -> dict[str, float]:
        return {"retired": float(len(self.retired)), "active": float(len(self.records) - len(self.retired))}


@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="online_filter", online=True, factory=OnlineFilter,
                         description="DAPO dynamic sampling (drop all-equal groups, refill) "
                                     "+ retire solved prompts",
                         options=tuple(DEFAULTS), requires=())
