"""What every text environment shares: the episode bookkeeping, lenient action parsing, running
an episode with a policy, and the uniform expert interface.

An environment subclasses :class:`TextEnv` and implements ``_reset()`` (draw the episode from
``self.rng``, return the first observation) and ``_step(action)`` (return
``(observation, reward, done, extra_info)``). The base class counts turns, ends the episode at
``max_turns`` (``info["truncated"] = True``), turns a non-string action into an invalid one
and fills ``info`` with ``success``, ``invalid``, ``turn`` and ``truncated``.

Seeding: ``reset(seed)`` draws everything from ``random.Random(f"{name}/{level}/{seed}")``
(string seeds hash with SHA-512, so episodes do not depend on ``PYTHONHASHSEED``): the same
seed and the same actions give the same episode, in any process.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_TRIM = " \t.!?\"'`[](){}<>:;,"


def normalize(action: Any) -> str | None:
    """The lenient, deterministic form of an action: its first non-empty line, lower-cased,
    runs of whitespace made one space, surrounding punctuation and brackets removed. None for
    a non-string (which every environment treats as an invalid action)."""
    if not isinstance(action, str):
        return None
    lines = [ln for ln in action.splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return re.sub(r"\s+", " ", text).strip(_TRIM).lower()


def strip_prefixes(text: str, prefixes: tuple[str, ...]) -> str:
    """``text`` without the first matching prefix among ``prefixes`` (tried in order)."""
    for p in prefixes:
        if text.startswith(p):
            return text[len(p):].strip(_TRIM)
    return text


class TextEnv:
    """One live episode at a time. Subclasses set ``name``, ``levels``, ``invalid_penalty``
    and ``turns_by_level`` (the default ``max_turns`` of each level)."""

    name = "env"
    levels: tuple[int, ...] = (1, 2, 3, 4)
    turns_by_level: dict[int, int] = {}
    invalid_penalty = -1.0

    def __init__(self, level: int = 2, verbose: bool = False, max_turns: int | None = None) -> None:
        if level not in self.levels:
            raise ValueError(f"{self.name}: level {level!r}; allowed: "
                             f"{', '.join(map(str, self.levels))}")
        if max_turns is not None and (not isinstance(max_turns, int) or max_turns < 1):
            raise ValueError(f"{self.name}: max_turns must be a positive int, got {max_turns!r}")
        self.level = level
        self.verbose = bool(verbose)
        self.max_turns = max_turns or self.turns_by_level[level]
        self.seed: int | None = None
        self.turn = 0
        self.done = True
        self.success = False
        self.episode_key = ""          # a canonical string of the hidden episode (set by _reset)
        self.rng = random.Random(0)

    # -- the protocol --------------------------------------------------------------------
    def reset(self, seed: int, record: dict | None = None) -> str:
        """Start the episode of ``seed``; returns the first observation. ``record`` (a dataset
        record) is accepted for the trainers' convenience and not needed: the seed and the
        factory options fix the episode."""
        self.seed = int(seed)
        self.turn, self.done, self.success = 0, False, False
        self.rng = random.Random(f"{self.name}/{self.level}/{self.seed}")
        return self._reset()

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        if self.seed is None:
            raise RuntimeError(f"{self.name}: call reset(seed) before step()")
        if self.done:
            raise RuntimeError(f"{self.name}: the episode is over; call reset(seed)")
        self.turn += 1
        if isinstance(action, str):
            obs, reward, done, extra = self._step(action)
        else:
            obs, reward, done, extra = self._invalid(f"not a string: {type(action).__name__}")
        truncated = not done and self.turn >= self.max_turns
        self.done = bool(done or truncated)
        info = {"success": self.success, "invalid": False, "turn": self.turn,
                "truncated": truncated, **extra}
        if self.done and self.reveal() is not None:
            info["answer"] = self.reveal()
        return obs, float(reward), self.done, info

    def close(self) -> None:
        """Release external resources (engines, sessions); a no-op for most environments."""

    def reveal(self) -> str | None:
        """The hidden answer (word, object, city), put in ``info["answer"]`` at the end."""
        return None

    # -- for subclasses ------------------------------------------------------------------
    def _reset(self) -> str:
        raise NotImplementedError

    def _step(self, action: str) -> tuple[str, float, bool, dict]:
        raise NotImplementedError

    def _invalid(self, why: str, obs: str = "invalid") -> tuple[str, float, bool, dict]:
        return obs, self.invalid_penalty, False, {"invalid": True, "reason": why}

    def _win(self, obs: str, reward: float) -> tuple[str, float, bool, dict]:
        self.success = True
        return obs, reward, True, {}


@dataclass(frozen=True)
class Trajectory:
    """One played episode: ``steps`` are the (observation, action) pairs in order (the
    observation the action answered), ``final_observation`` what the last action produced."""
    env: str
    seed: int
    options: dict
    steps: list[tuple[str, str]]
    final_observation: str
    ret: float
    success: bool
    rewards: list[float] = field(default_factory=list)

    @property
    def turns(self) -> int:
        return len(self.steps)


Policy = Callable[[TextEnv, str], str]


def run_episode(env: TextEnv, seed: int, policy: Policy, options: dict | None = None) -> Trajectory:
    """Play one episode of ``env`` from ``seed``; ``policy(env, observation) -> action``."""
    obs = env.reset(seed)
    steps, rewards, done, info = [], [], False, {"success": False}
    while not done:
        action = policy(env, obs)
        steps.append((obs, action))
        obs, reward, done, info = env.step(action)
        rewards.append(reward)
    return Trajectory(env=env.name, seed=int(seed), options=dict(options or {}), steps=steps,
                      final_observation=obs, ret=float(sum(rewards)),
                      success=bool(info["success"]), rewards=rewards)


def expert_trajectory(env_name: str, seed: int, **options: Any) -> Trajectory:
    """The expert's episode of environment ``env_name`` (a registered name) from ``seed``;
    ``options`` go to the environment's factory (``level``, ``verbose``, ...)."""
    from core.plugins import registry   # late: the registry imports this package

    spec = registry().get("environments", env_name)
    if spec.expert is None:
        raise ValueError(f"environment {env_name!r} has no expert")
    env = spec.factory(**options)
    try:
        return run_episode(env, seed, lambda e, _obs: spec.expert(e), options)
    finally:
        env.close()
