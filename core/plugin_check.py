"""Selected plugins exercised once before anything expensive starts.

A plugin that breaks its protocol (``core/protocols.py``) fails here, in the grid driver before
Ray starts, with one message naming the plugin, the method and what was expected, instead of
inside every trial: the reward scores one response, the curriculum serves one batch, hears its
outcomes and round-trips its state, an environment resets and steps once.
"""
from __future__ import annotations

import json
import math
from typing import Any

from core.errors import PluginError
from core.protocols import Outcome, RewardItem, Score


def _fail(kind: str, name: str, source: str, method: str, problem: str, expected: str) -> None:
    raise PluginError(f"{kind} plugin {name!r} ({source}): {method} {problem}; expected {expected}")


def _call(kind: str, name: str, source: str, method: str, fn, *args, **kwargs) -> Any:
    try:
        return fn(*args, **kwargs)
    except PluginError:
        raise
    except Exception as exc:
        _fail(kind, name, source, method, f"raised {type(exc).__name__}: {exc}",
              "it to work on one record of the selected data")


def check_reward(name: str, source: str, factory, options: dict, record: dict) -> None:
    where = ("reward", name, source)
    reward = _call(*where, f"factory(format_weight=0.0, **{options})", factory, format_weight=0.0, **options)
    if not callable(getattr(reward, "score_batch", None)):
        _fail(*where, "score_batch", "is missing",
              "an object with score_batch(items) -> list[core.protocols.Score]")
    item = RewardItem(record["data_source"], "", record["reward_model"]["ground_truth"],
                      {**record["extra_info"], "prompt_text": record["prompt"][-1]["content"]})
    try:
        out = _call(*where, "score_batch([one item])", reward.score_batch, [item])
        if not isinstance(out, list) or len(out) != 1:
            _fail(*where, "score_batch([one item])", f"returned {type(out).__name__} "
                  f"of length {len(out) if hasattr(out, '__len__') else '?'}", "a list with one Score")
        s = out[0]
        if not isinstance(s, Score):
            _fail(*where, "score_batch", f"returned a list of {type(s).__name__}",
                  "core.protocols.Score(score, acc, format, pred, reason)")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (s.score, s.acc, s.format)):
            _fail(*where, "score_batch", f"returned {s}", "finite numbers for score, acc and format")
    finally:
        getattr(reward, "close", lambda: None)()


def check_curriculum(name: str, source: str, factory, options: dict, records: list[dict],
                     size: int, group: int, seed: int) -> None:
    where = ("curriculum", name, source)
    cur = _call(*where, f"factory(records, seed={seed}, **{options})", factory, records, seed=seed, **options)
    for method in ("batch", "update", "state_dict", "load_state_dict"):
        if not callable(getattr(cur, method, None)):
            _fail(*where, method, "is missing", "the protocol batch / update / state_dict / load_state_dict")
    batch = _call(*where, f"batch(0, {size})", cur.batch, 0, size)
    if not isinstance(batch, list) or len(batch) != size or not all(isinstance(r, dict) for r in batch):
        _fail(*where, f"batch(0, {size})", f"returned {type(batch).__name__} "
              f"of {len(batch) if hasattr(batch, '__len__') else '?'} items", f"a list of {size} records")
    outs = [Outcome(record_index=i // group, reward=float(i % 2), correct=bool(i % 2))
            for i in range(len(batch) * group)]
    _call(*where, "update(0, records, outcomes)", cur.update, 0, batch, outs)
    state = _call(*where, "state_dict()", cur.state_dict)
    try:
        json.dumps(state)
    except (TypeError, ValueError) as exc:
        _fail(*where, "state_dict()", f"is not JSON-serialisable ({exc})", "a dict of plain values")
    _call(*where, "load_state_dict(state)", cur.load_state_dict, state)


def check_environment(name: str, source: str, factory, options: dict, record: dict | None) -> None:
    where = ("environment", name, source)
    env = _call(*where, f"factory(**{options})", factory, **options)
    if not isinstance(getattr(env, "max_turns", None), int):
        _fail(*where, "max_turns", f"is {getattr(env, 'max_turns', None)!r}", "an int")
    obs = _call(*where, "reset(seed=0, record)", env.reset, 0, record)
    if not isinstance(obs, str):
        _fail(*where, "reset", f"returned {type(obs).__name__}", "the first observation as text")
    out = _call(*where, "step('?')", env.step, "?")
    ok = (isinstance(out, tuple) and len(out) == 4 and isinstance(out[0], str)
          and isinstance(out[1], (int, float)) and isinstance(out[2], bool) and isinstance(out[3], dict))
    if not ok:
        _fail(*where, "step(action)", f"returned {out!r:.80}", "(observation: str, reward: float, done: bool, info: dict)")
    getattr(env, "close", lambda: None)()


def check_plugins(cfg, registry=None) -> None:
    """Exercise the trial's reward, curriculum (and environment) on the selected data."""
    from core import data
    from core.plugins import registry as get_registry
    reg = registry or get_registry()
    entry = {e.spec.name: e for kind in ("rewards", "curricula", "environments") for e in reg.entries(kind)}
    records = data.select(cfg, "train")
    rspec = reg.get("rewards", cfg.reward.name)
    if rspec.kind == "rule":   # a learned RM needs its endpoint and checkpoint (the trial builds it)
        check_reward(rspec.name, entry[rspec.name].source, rspec.factory, dict(cfg.reward.options), records[0])
    cspec = reg.get("curricula", cfg.curriculum.name)
    check_curriculum(cspec.name, entry[cspec.name].source, cspec.factory, dict(cfg.curriculum.options),
                     records, min(cfg.rl.prompts_per_step, 4), cfg.rl.group_size, cfg.seed)
