"""Typed, frozen records that plugins yield from their hooks.

A spec says what a plugin provides and how to build it; it never builds anything itself.
Factories do the heavy imports (torch, transformers, ...) only when they are called, so that
loading every plugin to list them stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

KINDS = ("rewards", "curricula", "datasets", "environments")


@dataclass(frozen=True)
class _Spec:
    name: str
    factory: Callable[..., Any]
    description: str

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"plugin name {self.name!r} must be non-empty [A-Za-z0-9_-]")
        if not callable(self.factory):
            raise TypeError(f"plugin {self.name!r}: factory must be callable")
        if "\n" in self.description.strip() or not self.description.strip():
            raise ValueError(f"plugin {self.name!r}: description must be one non-empty line")


@dataclass(frozen=True)
class RewardSpec(_Spec):
    """A reward function. ``kind="rule"`` is a verifier run in-process; ``kind="learned"`` is
    a reward model (scored through a Ray Serve endpoint). ``data_sources`` lists the
    ``data_source`` prefixes it can score (empty: any)."""

    kind: Literal["rule", "learned"] = "rule"
    data_sources: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in ("rule", "learned"):
            raise ValueError(f"reward {self.name!r}: kind must be 'rule' or 'learned', got {self.kind!r}")


@dataclass(frozen=True)
class CurriculumSpec(_Spec):
    """A prompt-ordering policy: which RL prompts the trainer sees at each step; its factory
    follows ``core.protocols.Curriculum`` and is called as ``factory(records, seed=,
    **options)`` with ``curriculum.options`` as the keyword ``options`` (each factory checks
    them and names the option and what is allowed when one is wrong). ``options`` lists the
    option names it accepts; ``requires`` the ``extra_info`` fields it reads from every record
    (``difficulty``: the level 1-4 of ``core.grading``, 0 = ungraded; ``domain``)."""

    options: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    # whether the schedule depends on outcomes (given the options): verl runs a static one as
    # the parquet's order and an online one through its custom sampler
    online: bool | Callable[[dict], bool] = False

    def is_online(self, options: dict) -> bool:
        return bool(self.online(dict(options)) if callable(self.online) else self.online)


@dataclass(frozen=True)
class DatasetSpec(_Spec):
    """A prompt source. ``domains`` and ``splits`` are what the config may select. The factory
    is called as ``factory(split=, n=, domains=, difficulties=, seed=, **options)`` where
    ``options`` are the set ``data.*`` keys among ``options``."""

    domains: tuple[str, ...] = field(default_factory=tuple)
    splits: tuple[str, ...] = ("train", "eval")
    options: tuple[str, ...] = ()        # optional `data.*` keys the factory accepts (path, ...)
    data_sources: tuple[str, ...] = ()   # `data_source` prefixes its records carry
    worked_examples: bool = True         # records carry extra_info.sft_response, or expert episodes
                                         # (environments: extra_info.expert), for the SFT warm start

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.domains:
            raise ValueError(f"dataset {self.name!r}: domains must not be empty")


@dataclass(frozen=True)
class EnvironmentSpec(_Spec):
    """A multi-turn text environment (LMRL-Gym style); its factory follows
    ``core.protocols.Environment``. ``max_turns`` is the most turns any level allows (size
    rollout buffers by it; each live env has its own ``max_turns``); ``options`` the keyword
    options the factory accepts; ``levels`` the values of its ``level`` option, easiest first,
    and ``knob`` what the level sets; ``expert(env) -> action`` the next action of a winning
    policy given the live env (it may read the hidden state), or None."""

    max_turns: int = 1
    options: tuple[str, ...] = ()
    levels: tuple[int, ...] = ()
    knob: str = ""
    expert: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_turns < 1:
            raise ValueError(f"environment {self.name!r}: max_turns must be >= 1")
        if self.levels and "level" not in self.options:
            raise ValueError(f"environment {self.name!r}: levels given but `level` is not an option")
        if self.expert is not None and not callable(self.expert):
            raise TypeError(f"environment {self.name!r}: expert must be callable or None")


SPEC_TYPES: dict[str, type[_Spec]] = {
    "rewards": RewardSpec,
    "curricula": CurriculumSpec,
    "datasets": DatasetSpec,
    "environments": EnvironmentSpec,
}
