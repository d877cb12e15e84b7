"""Scores for sampled responses, through the reward protocol (``core.protocols.Reward``:
``score_batch(items) -> list[Score]``), and the outcomes a curriculum hears."""
from __future__ import annotations

import numpy as np

from core.protocols import Outcome, RewardItem, score_items


def score(reward, records: list[dict], texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and correctness for ``n`` responses per record (rows grouped by record)."""
    from core.backends.rollout import prompt_text
    extras = [{**r["extra_info"], "prompt_text": prompt_text(r)} for r in records]   # RMs read it
    items = [RewardItem(records[i // n]["data_source"], t, records[i // n]["reward_model"]["ground_truth"],
                        extras[i // n]) for i, t in enumerate(texts)]
    scores = score_items(reward, items)
    return (np.array([s.score for s in scores], dtype=float),
            np.array([s.acc >= 0.5 for s in scores], dtype=bool))


def outcomes(rewards: np.ndarray, acc: np.ndarray, n: int) -> list[Outcome]:
    """One Outcome per sampled response, as a curriculum hears them (grouped by record)."""
    return [Outcome(record_index=i // n, reward=float(r), correct=bool(a))
            for i, (r, a) in enumerate(zip(rewards, acc))]
