"""What the curricula share: option checks, the record fields they read, seeded streams.

Records are the RL pool's records (``plugins/datasets``, Guru's field names). Curricula read
``extra_info.difficulty`` (the level 1-4 of ``core.grading``, 0 = ungraded) and
``extra_info.domain`` (else ``ability``, else the ``data_source`` prefix before ``__``).
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any


def level(record: dict) -> int:
    """The record's difficulty level: 1 (easiest) .. 4, 0 when ungraded."""
    return int((record.get("extra_info") or {}).get("difficulty") or 0)


def domain(record: dict) -> str:
    extra = record.get("extra_info") or {}
    return str(extra.get("domain") or record.get("ability")
               or str(record.get("data_source", "")).split("__", 1)[0])


def fail(name: str, key: str, allowed: str, value: Any) -> None:
    raise ValueError(f"{name}: option {key!r} must be {allowed}, got {value!r}")


def check_known(name: str, options: dict, known: Iterable[str]) -> None:
    known = tuple(known)
    for key in options:
        if key not in known:
            raise ValueError(f"{name}: unknown option {key!r}; allowed: "
                             f"{', '.join(known) if known else '(none)'}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def check_pool(name: str, records: Sequence[dict]) -> list[dict]:
    if not records:
        raise ValueError(f"{name}: the RL pool is empty (data.d_rl = 0?)")
    return list(records)


class Stream:
    """Pool positions served in seeded epochs: epoch ``e`` is a permutation of ``positions``
    shuffled by ``random.Random(f"{seed}/{key}/{e}")`` (``f"{seed}/{e}"`` when ``key`` is
    empty, the ``mixed`` curriculum's original order); ``cursor`` counts the items served, so
    the stream is resumable from that one number."""

    def __init__(self, positions: Sequence[int], seed: int, key: str = "", cursor: int = 0) -> None:
        self.positions, self.seed, self.key, self.cursor = list(positions), seed, key, cursor
        self._memo: tuple[int, list[int]] | None = None

    def _epoch(self, epoch: int) -> list[int]:
        if self._memo is None or self._memo[0] != epoch:
            order = list(self.positions)
            tag = f"{self.seed}/{self.key}/{epoch}" if self.key else f"{self.seed}/{epoch}"
            random.Random(tag).shuffle(order)
            self._memo = (epoch, order)
        return self._memo[1]

    def at(self, index: int) -> int:
        epoch, offset = divmod(index, len(self.positions))
        return self._epoch(epoch)[offset]

    def take(self, n: int, skip: set[int] | frozenset = frozenset()) -> list[int]:
        """The next ``n`` positions, passing over those in ``skip`` (retired prompts)."""
        if n > 0 and skip and not set(self.positions) - set(skip):
            raise RuntimeError("every position of the stream is skipped")
        out: list[int] = []
        while len(out) < n:
            pos = self.at(self.cursor)
            self.cursor += 1
            if pos not in skip:
                out.append(pos)
        return out


class Base:
    """Common parts: the pool, the seed, the state header every state_dict carries."""
    name = "base"
    online = False    # True: the schedule depends on update()'s outcomes (verl: custom sampler)

    def __init__(self, records: Sequence[dict], seed: int) -> None:
        self.records = check_pool(self.name, records)
        if not is_int(seed):
            raise ValueError(f"{self.name}: seed must be an int, got {seed!r}")
        self.seed = seed

    def _header(self) -> dict:
        return {"name": self.name, "pool": len(self.records), "seed": self.seed}

    def _check_state(self, state: dict) -> None:
        want = self._header()
        got = {k: state.get(k) for k in want}
        if got != want:
            raise ValueError(f"{self.name}: the saved state belongs to {got}, not to this "
                             f"curriculum {want} (another curriculum, pool or seed)")

    def metrics(self) -> dict[str, float]:
        """Numbers worth logging as ``curriculum/<key>`` after a step (optional method)."""
        return {}
