"""The ``easy_to_hard`` curriculum: difficulty stages in order, easiest first.

Stages: the difficulty levels present in the pool in ascending order (``extra_info.difficulty``,
1 easiest .. 4), then, when the pool has ungraded records (level 0), one last stage made of
them: their difficulty is unknown, so they come after every graded level (a pool that is all
ungraded is a single stage, i.e. ``mixed``). The last stage lasts until the end of training.

Step ``t`` serves ``size`` records: ``r = floor(replay * size + 0.5)`` of them (0 in the first
stage) from the union of the earlier stages, the other ``size - r`` from the current stage,
current ones first. Each source is a seeded stream (epochs of permutations, see
``_common.Stream``, keyed by the stage) that starts afresh when the stage changes.

A stage ends, whichever comes first (both are options; at least one must be set):

- ``steps_per_stage = k``: ``batch(t)`` starts the next stage at ``t`` when the current one
  began at a step ``<= t - k`` (every stage gets ``k`` steps; the budget needs no outcomes).
- ``advance_at = a``: ``update(t)`` adds step ``t``'s outcomes on current-stage records (replay
  ones excluded) to a window of the last ``window`` steps of this stage; once the window holds
  ``window`` steps and their pooled pass rate (correct samples / samples) is ``>= a``, the next
  stage starts at step ``t + 1``.

Options (defaults): ``steps_per_stage`` int >= 1 or null (10), ``advance_at`` in (0, 1] or null
(null), ``window`` int >= 1 (3), ``replay`` in [0, 1) (0.0). With ``advance_at`` null the
schedule is a function of (seed, step) alone (``online`` is False: verl can take it as the
parquet order); otherwise it depends on outcomes (``online``). Records need
``extra_info.difficulty``.
"""
from __future__ import annotations

from collections.abc import Sequence

from core.hookspecs import hookimpl
from core.specs import CurriculumSpec
from plugins.curricula._common import Base, Stream, check_known, fail, is_int, is_num, level

DEFAULTS = {"steps_per_stage": 10, "advance_at": None, "window": 3, "replay": 0.0}


def _check(name: str, o: dict) -> None:
    if o["steps_per_stage"] is not None and not (is_int(o["steps_per_stage"]) and o["steps_per_stage"] >= 1):
        fail(name, "steps_per_stage", "an int >= 1 or null", o["steps_per_stage"])
    if o["advance_at"] is not None and not (is_num(o["advance_at"]) and 0 < o["advance_at"] <= 1):
        fail(name, "advance_at", "in (0, 1] or null", o["advance_at"])
    if not (is_int(o["window"]) and o["window"] >= 1):
        fail(name, "window", "an int >= 1", o["window"])
    if not (is_num(o["replay"]) and 0 <= o["replay"] < 1):
        fail(name, "replay", "in [0, 1)", o["replay"])
    if o["steps_per_stage"] is None and o["advance_at"] is None:
        raise ValueError(f"{name}: set option 'steps_per_stage' or 'advance_at' (or both); "
                         "with neither the first stage never ends")


class EasyToHard(Base):
    name = "easy_to_hard"

    def __init__(self, records: Sequence[dict], seed: int = 0, **options) -> None:
        check_known(self.name, options, DEFAULTS)
        super().__init__(records, seed)
        o = {**DEFAULTS, **options}
        _check(self.name, o)
        self.steps_per_stage, self.advance_at = o["steps_per_stage"], o["advance_at"]
        self.window, self.replay = o["window"], float(o["replay"])
        self.online = self.advance_at is not None
        present = {level(r) for r in self.records}
        self.levels = sorted(present - {0}) + ([0] if 0 in present else [])
        self.stages = [[p for p, r in enumerate(self.records) if level(r) == lv] for lv in self.levels]
        self.stage, self.start, self.window_log = 0, 0, []
        self._streams(0, 0)

    def _streams(self, cursor: int, replay_cursor: int) -> None:
        s = self.stage
        self._cur = Stream(self.stages[s], self.seed, f"stage{s}", cursor)
        earlier = [p for stage in self.stages[:s] for p in stage]
        self._rep = Stream(earlier, self.seed, f"replay{s}", replay_cursor) if earlier else None

    def _advance(self, start: int) -> None:
        if self.stage + 1 < len(self.stages):
            self.stage, self.start, self.window_log = self.stage + 1, start, []
            self._streams(0, 0)

    def batch(self, step: int, size: int) -> list[dict]:
        if self.steps_per_stage is not None and step - self.start >= self.steps_per_stage:
            self._advance(step)
        n_replay = int(self.replay * size + 0.5) if self._rep is not None else 0
        positions = self._cur.take(size - n_replay) + (self._rep.take(n_replay) if n_replay else [])
        return [self.records[p] for p in positions]

    def update(self, step: int, records, outcomes) -> None:
        current = self.levels[self.stage]
        here = {i for i, r in enumerate(records) if level(r) == current}
        mine = [o.correct for o in outcomes if o.record_index in here]
        self.window_log = (self.window_log + [[sum(map(bool, mine)), len(mine)]])[-self.window:]
        if self.advance_at is not None and len(self.window_log) == self.window:
            correct, total = (sum(col) for col in zip(*self.window_log))
            if total and correct / total >= self.advance_at:
                self._advance(step + 1)

    def state_dict(self) -> dict:
        return {**self._header(), "stage": self.stage, "start": self.start,
                "window_log": [list(x) for x in self.window_log], "cursor": self._cur.cursor,
                "replay_cursor": self._rep.cursor if self._rep is not None else 0}

    def load_state_dict(self, state: dict) -> None:
        self._check_state(state)
        self.stage, self.start = int(state["stage"]), int(state["start"])
        self.window_log = [list(x) for x in state["window_log"]]
        self._streams(int(state["cursor"]), int(state["replay_cursor"]))

    def metrics(self) -> dict[str, float]:
        return {"stage": float(self.stage), "level": float(self.levels[self.stage])}


@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="easy_to_hard", factory=EasyToHard,
                         online=lambda options: options.get("advance_at") is not None,
                         description="difficulty stages easiest first; advance by step budget or pass rate",
                         options=tuple(DEFAULTS), requires=("difficulty",))
