"""The ``domain_schedule`` curriculum: per-domain sampling weights that change over steps.

``schedule`` is a list of breakpoints ``[[step, {domain: weight, ...}], ...]`` with steps
strictly increasing ints >= 0 and weights >= 0 summing to > 0 at every breakpoint (a domain
missing from a breakpoint has weight 0 there). The weights ``w(t)`` at step ``t``:

- before the first breakpoint: the first one's; from the last breakpoint on: the last one's;
- ``mode: linear`` (default), between breakpoints ``(s_i, w_i)`` and ``(s_j, w_j)``:
  ``w(t) = w_i + (t - s_i) / (s_j - s_i) * (w_j - w_i)``, per domain;
- ``mode: step``: ``w(t) = w_i`` of the last breakpoint with ``s_i <= t``;

then normalised to sum 1. Step ``t`` draws each of its ``size`` slots' domain from ``w(t)``
(``random.Random(f"{seed}/{t}/domains").choices``), and a domain's slots take the next records
of that domain's seeded stream (epochs of permutations of the domain's records, see
``_common.Stream``), so every record of a domain is served once before any is served twice.
Pool domains in no breakpoint are never served; a domain in the schedule that the pool lacks is
an error. Outcomes change nothing (``online`` is False); the state is the streams' cursors.
Options: ``schedule`` (required), ``mode`` ``linear`` | ``step``. Records need
``extra_info.domain``.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from core.hookspecs import hookimpl
from core.specs import CurriculumSpec
from plugins.curricula._common import Base, Stream, check_known, domain, fail, is_int, is_num

DEFAULTS = {"schedule": None, "mode": "linear"}
SHAPE = "a list of [step, {domain: weight}] breakpoints, steps increasing, weights >= 0 summing to > 0"


def parse_schedule(name: str, schedule, domains: Sequence[str]) -> list[tuple[int, dict[str, float]]]:
    if schedule is None:
        raise ValueError(f"{name}: option 'schedule' is required: {SHAPE}")
    if isinstance(schedule, (str, bytes, dict)) or not hasattr(schedule, "__iter__") or not len(schedule):
        fail(name, "schedule", SHAPE, schedule)
    out: list[tuple[int, dict[str, float]]] = []
    for point in schedule:
        ok = (not isinstance(point, (str, dict)) and hasattr(point, "__len__") and len(point) == 2
              and is_int(point[0]) and point[0] >= 0 and hasattr(point[1], "items")
              and all(is_num(w) and w >= 0 for w in point[1].values()) and sum(point[1].values()) > 0)
        if not ok or (out and point[0] <= out[-1][0]):
            fail(name, "schedule", SHAPE, schedule)
        unknown = sorted(set(point[1]) - set(domains))
        if unknown:
            raise ValueError(f"{name}: option 'schedule' names domain {unknown[0]!r}, which the RL "
                             f"pool does not have; its domains: {', '.join(sorted(domains))}")
        out.append((point[0], {str(d): float(w) for d, w in point[1].items()}))
    return out


class DomainSchedule(Base):
    name = "domain_schedule"

    def __init__(self, records: Sequence[dict], seed: int = 0, **options) -> None:
        check_known(self.name, options, DEFAULTS)
        super().__init__(records, seed)
        o = {**DEFAULTS, **options}
        if o["mode"] not in ("linear", "step"):
            fail(self.name, "mode", "'linear' or 'step'", o["mode"])
        self.mode = o["mode"]
        by_domain: dict[str, list[int]] = {}
        for p, r in enumerate(self.records):
            by_domain.setdefault(domain(r), []).append(p)
        self.schedule = parse_schedule(self.name, o["schedule"], list(by_domain))
        self.domains = sorted({d for _, w in self.schedule for d in w})
        self._streams = {d: Stream(by_domain[d], seed, f"domain/{d}") for d in self.domains}
        self._last = 0

    def weights(self, step: int) -> dict[str, float]:
        """The normalised weights ``w(step)``."""
        steps = [s for s, _ in self.schedule]
        i = max((k for k, s in enumerate(steps) if s <= step), default=0)
        w = dict(self.schedule[i][1])
        if self.mode == "linear" and steps[0] <= step and i + 1 < len(steps):
            a = (step - steps[i]) / (steps[i + 1] - steps[i])
            nxt = self.schedule[i + 1][1]
            w = {d: (1 - a) * w.get(d, 0.0) + a * nxt.get(d, 0.0) for d in self.domains}
        total = sum(w.values())
        return {d: w.get(d, 0.0) / total for d in self.domains}

    def batch(self, step: int, size: int) -> list[dict]:
        self._last = step
        w = self.weights(step)
        slots = random.Random(f"{self.seed}/{step}/domains").choices(
            self.domains, weights=[w[d] for d in self.domains], k=size)
        return [self.records[self._streams[d].take(1)[0]] for d in slots]

    def update(self, step: int, records, outcomes) -> None:
        """The schedule ignores outcomes: the weights are a function of the step alone."""

    def state_dict(self) -> dict:
        return {**self._header(), "cursors": {d: s.cursor for d, s in self._streams.items()}}

    def load_state_dict(self, state: dict) -> None:
        self._check_state(state)
        for d, cursor in state["cursors"].items():
            self._streams[d].cursor = int(cursor)

    def metrics(self) -> dict[str, float]:
        return {f"weight/{d}": w for d, w in self.weights(self._last).items()}


@hookimpl
def agentic_rl_curricula():
    yield CurriculumSpec(name="domain_schedule", factory=DomainSchedule,
                         description="per-domain sampling weights over steps (breakpoints, linear or stepwise)",
                         options=tuple(DEFAULTS), requires=("domain",))
