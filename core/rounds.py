"""One RL step's rollout rounds, for any curriculum (``core.protocols.Curriculum``).

A plain curriculum serves one batch per step and hears its outcomes once. A filtering one (such
as ``online_filter``, DAPO's dynamic sampling) also implements ``filter(step, records,
outcomes) -> kept indices`` and ``refill(step, missing) -> records``: the groups it drops are
replaced by more rollouts until the batch is full or its refills run out. Trainers drive every
step the same way::

    rounds = StepRounds(curriculum, step, size)   # step 0-based, size = rl.prompts_per_step
    todo = rounds.first()                         # curriculum.batch(step, size)
    while todo:
        outcomes = rollout_and_score(todo)        # G samples per record, Outcome.record_index
        todo = rounds.add(todo, outcomes)         #   indexes into todo; filter, maybe refill
    chosen = rounds.finish()                      # curriculum.update(step, every round's records)
    # train on chosen[k] = (round, index into that round's records); log rounds.stats as
    # train/<key>; every round's rollouts count in compute/flops_rollout

``rounds.stats``: ``rounds`` (rollout rounds, 1 without refill), ``served_prompts``,
``filtered_groups`` (groups dropped), ``topped_up`` (dropped groups trained on to keep the
batch's size: zero advantage), ``surplus_groups`` (kept groups beyond ``size``) and
``extra_prompts`` (prompts rolled out but not trained on: the compute filtering spent).
"""
from __future__ import annotations

from collections.abc import Sequence

from core.protocols import Outcome


class StepRounds:
    """One RL step's rollout rounds for any curriculum (see the module docstring)."""

    def __init__(self, curriculum, step: int, size: int) -> None:
        self.cur, self.step, self.size = curriculum, step, size
        self.filtering = all(callable(getattr(curriculum, m, None)) for m in ("filter", "refill"))
        self.rounds: list[tuple[list[dict], list[Outcome]]] = []
        self.kept: list[tuple[int, int]] = []
        self.dropped: list[tuple[int, int]] = []
        self.stats: dict[str, int] = {}

    def first(self) -> list[dict]:
        return list(self.cur.batch(self.step, self.size))

    def add(self, records: Sequence[dict], outcomes: Sequence[Outcome]) -> list[dict]:
        """Record one round's results; the next round's records, or [] when the step is done."""
        r = len(self.rounds)
        self.rounds.append((list(records), list(outcomes)))
        every = set(range(len(records)))
        keep = set(self.cur.filter(self.step, records, outcomes)) if self.filtering else every
        if not keep <= every:
            raise ValueError(f"filter returned indices {sorted(keep - every)} "
                             f"outside 0..{len(records) - 1}")
        for i in range(len(records)):
            (self.kept if i in keep else self.dropped).append((r, i))
        if not self.filtering or len(self.kept) >= self.size:
            return []
        return list(self.cur.refill(self.step, self.size - len(self.kept)))

    def finish(self) -> list[tuple[int, int]]:
        """The groups to train on, as (round, index); updates the curriculum with every round."""
        chosen = self.kept[:self.size] + self.dropped[:max(0, self.size - len(self.kept))]
        records: list[dict] = []
        outcomes: list[Outcome] = []
        for recs, outs in self.rounds:
            outcomes += [Outcome(len(records) + o.record_index, o.reward, o.correct, o.extra) for o in outs]
            records += recs
        self.cur.update(self.step, records, outcomes)
        self.stats = {"rounds": len(self.rounds), "served_prompts": len(records),
                      "filtered_groups": len(self.dropped),
                      "topped_up": max(0, len(chosen) - len(self.kept)),
                      "surplus_groups": max(0, len(self.kept) - self.size),
                      "extra_prompts": len(records) - len(chosen)}
        return chosen
