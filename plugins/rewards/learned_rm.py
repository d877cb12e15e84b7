"""``learned_rm``: rewards from a reward model served by Ray Serve (``serve/app.py``).

The client posts ``{"items": [{"prompt", "response"}, ...]}`` to ``<url>/rm/<size>/score`` with
the checkpoint in the header ``serve_multiplexed_model_id``, over one pooled ``aiohttp``
session: a batch is split into chunks sent concurrently (at most ``concurrency`` in flight),
each of at most ``chunk`` items and ``max_chunk_bytes`` of JSON, well inside the server's
limits (``max_items`` 4096, ``max_body_bytes`` 32 MiB); the scores come back in order.
Connection errors, timeouts and 5xx answers are retried with exponential backoff and jitter
(``retries`` times, from 0.25 s doubling to 8 s); each failed attempt is counted in
``errors`` (reported as ``reward/rm_errors``). A request that still fails raises
``RMUnavailable``: an RM outage never turns into silent zero rewards. 4xx answers (bad token,
bad payload, unknown checkpoint, a text over the server's length limit: 413) are not retried
and raise at once, with the server's message.

``score`` is the RM's reward (plus ``format_weight`` x format); ``acc``, ``format`` and
``pred`` come from the gold rule verifier (``gold``), so pass@k and the gold reward stay
rule-based while the policy optimises the proxy.
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Sequence
from typing import Any

from core.hookspecs import hookimpl
from core.specs import RewardSpec
from core.protocols import Score


class RMUnavailable(RuntimeError):
    """The reward-model endpoint did not answer after all retries, or refused the request."""


def split_chunks(items: list[dict], max_items: int, max_bytes: int) -> list[list[dict]]:
    """Consecutive chunks of at most ``max_items`` items and about ``max_bytes`` of JSON each
    (an item larger than that alone: the server says whether it takes it)."""
    chunks: list[list[dict]] = []
    size = 0
    for it in items:
        n = len(json.dumps(it)) + 2
        if not chunks or len(chunks[-1]) >= max_items or size + n > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(it)
        size += n
    return chunks


class LearnedRM:
    def __init__(self, url: str, size: str, model_id: str | None = None, token: str | None = None,
                 gold=None, format_weight: float = 0.0, timeout_s: float = 30.0, retries: int = 6,
                 chunk: int = 64, concurrency: int = 8, backoff_s: float = 0.25,
                 max_chunk_bytes: int = 4 * 2 ** 20) -> None:
        self.endpoint = f"{url.rstrip('/')}/rm/{size}/score"
        self.model_id, self.token, self.gold = model_id, token, gold
        self.format_weight, self.timeout_s, self.retries = format_weight, timeout_s, retries
        self.chunk, self.concurrency, self.backoff_s = chunk, concurrency, backoff_s
        self.max_chunk_bytes = max_chunk_bytes
        self.errors = 0          # failed attempts so far (each retried or raised)
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._session = None

    # --- HTTP ------------------------------------------------------------------------------------
    async def _session_(self):
        if self._session is None:
            import aiohttp
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def _post(self, items: list[dict], sem: asyncio.Semaphore) -> list[float]:
        import aiohttp
        headers = {"Content-Type": "application/json"}
        if self.model_id:
            headers["serve_multiplexed_model_id"] = self.model_id
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        session = await self._session_()
        last = ""
        for attempt in range(self.retries + 1):
            async with sem:
                self.requests += 1
                try:
                    async with session.post(self.endpoint, json={"items": items}, headers=headers) as resp:
                        if resp.status == 200:
                            scores = (await resp.json())["scores"]
                            if len(scores) != len(items):
                                raise RMUnavailable(f"{self.endpoint} returned {len(scores)} scores "
                                                    f"for {len(items)} items")
                            return scores
                        text = (await resp.text())[:300]
                        if resp.status < 500:
                            self.errors += 1
                            raise RMUnavailable(f"{self.endpoint} refused the request "
                                                f"(HTTP {resp.status}): {text}")
                        last = f"HTTP {resp.status}: {text}"
                except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
            self.errors += 1
            if attempt < self.retries:
                delay = min(8.0, self.backoff_s * 2 ** attempt)
                await asyncio.sleep(delay * (0.5 + random.random()))
        raise RMUnavailable(f"{self.endpoint} failed {self.retries + 1} times; last error: {last}")

    async def _score_all(self, items: list[dict]) -> list[float]:
        sem = asyncio.Semaphore(self.concurrency)
        chunks = split_chunks(items, self.chunk, self.max_chunk_bytes)
        results = await asyncio.gather(*(self._post(c, sem) for c in chunks))
        return [s for r in results for s in r]

    def rm_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Raw RM scores, in order (blocking; safe to call from any thread)."""
        items = [{"prompt": p, "response": r} for p, r in zip(prompts, responses)]
        return asyncio.run_coroutine_threadsafe(self._score_all(items), self._loop).result()

    # --- reward-plugin interface -------------------------------------------------------------------
    def score_batch(self, items: Sequence[tuple[str, str, Any, dict | None]]) -> list[Score]:
        prompts = [(extra or {}).get("prompt_text") or "" for _, _, _, extra in items]
        scores = self.rm_scores(prompts, [resp for _, resp, _, _ in items])
        gold = (self.gold.score_batch(items) if hasattr(self.gold, "score_batch")
                else [self.gold(*it) for it in items]) if self.gold else [None] * len(items)
        out = []
        for s, g in zip(scores, gold):
            fmt = g.format if g else 0.0
            out.append(Score(score=float(s) + self.format_weight * fmt, acc=g.acc if g else 0.0,
                             format=fmt, pred=g.pred if g else None, reason=g.reason if g else "rm"))
        return out

    def __call__(self, data_source: str, response: str, ground_truth: Any,
                 extra_info: dict | None = None) -> Score:
        return self.score_batch([(data_source, response, ground_truth, extra_info)])[0]

    def metrics(self) -> dict[str, float]:
        return {"reward/rm_errors": float(self.errors), "reward/rm_requests": float(self.requests)}

    def close(self) -> None:
        async def _close():
            if self._session is not None:
                await self._session.close()
        asyncio.run_coroutine_threadsafe(_close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)


@hookimpl
def agentic_rl_rewards():
    yield RewardSpec(
        name="learned_rm", factory=LearnedRM, kind="learned",
        description="a Bradley-Terry reward model on Ray Serve, queried over HTTP; gold by a rule reward")
