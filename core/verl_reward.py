"""The reward bridge verl loads through ``reward.custom_reward_function.path`` / ``.name``.

``compute_score(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)`` is
async. ``reward_kwargs`` (``+reward.custom_reward_function.reward_kwargs.*``, written by
``core/backends/verl.py``) name our reward plugin and its settings: ``reward_name``,
``format_weight``, ``reward_options`` (a JSON string of the plugin's own settings) and, for a
learned RM, ``rm_url``, ``rm_size``, ``rm_model_id``,
``rm_token``, ``rm_gold``. The plugin comes from the same registry as the local backend, is
built once per process and reused. It returns ``{"score", "acc", "pred", "domain",
"prompt_index", "difficulty"}``; verl
puts every key into ``reward_extra_info`` (``pred`` enables its maj@N; ``domain`` lets our
validation-dump parser compute pass@k per domain).

Where CPU-heavy verifiers run: verl's ``naive`` reward manager awaits this coroutine, and we
run the plugin call in a worker thread (``asyncio.to_thread``) so the event loop stays free.
Nothing in a thread relies on ``signal.alarm``: math-verify runs in our own worker processes
(``plugins/rewards/_math_worker.py``, the main thread there) and model code runs in the
bubblewrap sandbox's own processes, so we do not need verl's ``remote`` reward manager. A
learned RM is called over HTTP on its Ray Serve endpoint by the ``learned_rm`` client.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any

_lock = threading.Lock()
_cache: dict[tuple, Any] = {}


def _reward(kw: dict[str, Any]):
    """The reward plugin for these kwargs, built once per process."""
    key = tuple(sorted((k, str(v)) for k, v in kw.items()))
    with _lock:
        if key not in _cache:
            from core.plugins import registry
            reg = registry()
            name = kw.get("reward_name", "synthetic")
            spec = reg.get("rewards", name)
            fw = float(kw.get("format_weight", 0.0))
            if spec.kind == "learned":
                gold = reg.get("rewards", kw.get("rm_gold", "synthetic")).factory(format_weight=0.0)
                _cache[key] = spec.factory(url=kw["rm_url"], size=kw["rm_size"], model_id=kw.get("rm_model_id"),
                                           token=kw.get("rm_token"), gold=gold, format_weight=fw,
                                           timeout_s=float(kw.get("rm_timeout_s", 30.0)),
                                           retries=int(kw.get("rm_retries", 6)))
            else:
                import json
                options = json.loads(kw.get("reward_options") or "{}")
                _cache[key] = spec.factory(format_weight=fw, **options)
        return _cache[key]


def _extra(extra_info: Any) -> dict:
    import json
    extra = dict(extra_info or {})
    if isinstance(extra.get("json"), str):          # the full extra_info we wrote to parquet
        try:
            extra = {**json.loads(extra["json"]), **{k: v for k, v in extra.items() if k != "json"}}
        except ValueError:
            pass
    return extra


def score_sync(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None,
               **reward_kwargs: Any) -> dict:
    fn = _reward(reward_kwargs)
    extra = _extra(extra_info)
    s = fn(data_source, solution_str, ground_truth, extra)
    return {"score": float(s.score), "acc": float(s.acc), "pred": "" if s.pred is None else str(s.pred),
            "domain": extra.get("domain") or data_source.split("__", 1)[0],
            # the row's position in the trial's parquet: validation dumps group samples by it
            # (two rows with the same text, as Guru's repeated AIME/AMC eval files have, stay apart)
            "prompt_index": int(extra.get("index", -1)),
            "difficulty": int(extra.get("difficulty") or 0)}


async def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                        extra_info: Any = None, **reward_kwargs: Any) -> dict:
    """verl's custom reward function (async)."""
    return await asyncio.to_thread(score_sync, data_source, solution_str, ground_truth,
                                   extra_info, **reward_kwargs)
