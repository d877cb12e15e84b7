"""What plugins' factories return: the typed contracts between a trial and its plugins.

Each spec in ``core/specs.py`` names the protocol its factory's product follows; the config
check (``core/plugin_check.py``) builds every selected plugin and exercises it once on one
record before Ray starts, so a plugin that breaks its protocol fails there with one message
naming the plugin, the method and what was expected.

Reward (``RewardSpec``)::

    reward = factory(format_weight=0.0, **settings)
    reward.score_batch([RewardItem(data_source, response, ground_truth, extra_info), ...])
        -> list[Score]                               # one per item, in order
    reward.close()                                   # optional: pools, sessions

Curriculum (``CurriculumSpec``)::

    curriculum = factory(records, seed=0, **options)  # records: the RL pool (D_RL)
    curriculum.batch(step, size) -> list[record]      # the prompts of RL step ``step`` (0-based)
    curriculum.update(step, records, outcomes)        # after scoring: one Outcome per sample
    curriculum.state_dict() -> dict                   # JSON-serialisable
    curriculum.load_state_dict(state)                 # a resumed trial continues the schedule

Environment (``EnvironmentSpec``)::

    env = factory(**options)                          # one live episode per object
    env.max_turns -> int
    env.reset(seed, record=None) -> str               # the first observation (text)
    env.step(action: str) -> (observation: str, reward: float, done: bool, info: dict)

Nothing here imports torch, ray or verl.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable


@dataclass(frozen=True)
class Score:
    """One scored response. ``score`` is what the policy optimises (reward); ``acc`` is
    correctness in [0, 1] (what pass@k counts, >= 0.5 is correct); ``format`` whether the
    answer had the expected form; ``pred`` the extracted answer; ``reason`` a one-line why."""
    score: float
    acc: float
    format: float = 0.0
    pred: str | None = None
    reason: str = ""


class RewardItem(NamedTuple):
    """What a reward scores: one response to one record."""
    data_source: str
    response: str
    ground_truth: Any
    extra_info: dict | None = None


@runtime_checkable
class Reward(Protocol):
    def score_batch(self, items: Sequence[RewardItem]) -> list[Score]: ...


@dataclass(frozen=True)
class Outcome:
    """One sampled response's result, as a curriculum hears it after each step."""
    record_index: int           # index into the step's ``records`` (samples are grouped by record)
    reward: float
    correct: bool
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Curriculum(Protocol):
    def batch(self, step: int, size: int) -> list[dict]: ...

    def update(self, step: int, records: Sequence[dict], outcomes: Sequence[Outcome]) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class Environment(Protocol):
    max_turns: int

    def reset(self, seed: int, record: dict | None = None) -> str: ...

    def step(self, action: str) -> tuple[str, float, bool, dict]: ...


def score_items(reward: Any, items: Sequence[RewardItem]) -> list[Score]:
    """``reward.score_batch(items)``, checked: a list of ``Score`` of the right length."""
    items = [RewardItem(*it) for it in items]
    scores = reward.score_batch(items)
    if not isinstance(scores, list) or len(scores) != len(items):
        raise TypeError(f"score_batch returned {type(scores).__name__} of "
                        f"{len(scores) if hasattr(scores, '__len__') else '?'} items for "
                        f"{len(items)}; expected a list of Score, one per item")
    return scores
