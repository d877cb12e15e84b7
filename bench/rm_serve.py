"""Reward-model endpoint throughput on loopback: Serve batching against ``max_batch_size=1``.

Two apps with the same RM checkpoint (tiny ladder size ``m`` by default, ``ARL_BENCH_RM_SIZE``
to change; random init: the weights do not change the cost) and one replica each, one with ``max_batch_size=64`` and one with 1. A bounded
load generator (``CLIENTS`` concurrent aiohttp clients, each sending ``REQUESTS`` requests of
one item back to back) drives each in turn; prints requests per second and p50 / p99 latency
for both and the throughput ratio.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import numpy as np

CLIENTS, REQUESTS = 64, 12
SIZE = os.environ.get("ARL_BENCH_RM_SIZE", "m")   # tiny ladder size of the RM


async def _drive(url: str, model_id: str) -> tuple[float, np.ndarray]:
    import aiohttp
    lat: list[float] = []
    headers = {"serve_multiplexed_model_id": model_id}

    async def client(c: int, session) -> None:
        for i in range(REQUESTS):
            body = {"items": [{"prompt": f"{c}+{i}=", "response": f"#{c + i}"}]}
            t = time.perf_counter()
            async with session.post(url, json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                await resp.json()
            lat.append(time.perf_counter() - t)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as session:
        await client(-1, session)                      # warm up: load the checkpoint
        lat.clear()
        t = time.perf_counter()
        await asyncio.gather(*(client(c, session) for c in range(CLIENTS)))
        wall = time.perf_counter() - t
    return CLIENTS * REQUESTS / wall, np.array(lat)


def main() -> None:
    import ray
    from ray import serve

    from core.config import load
    from core.grid import free_port
    from core.models import model_source
    from serve.app import RMAppArgs, build_app, route
    from serve.rm_model import init_rm

    cfg = load("demo", [])
    root = Path(tempfile.mkdtemp(prefix="rm-bench-"))
    backbone = model_source(cfg.ladder.sizes[SIZE], root / "models")
    init_rm(backbone, root / "ckpt" / "bench")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    results = {}
    try:
        for name, mbs in (("batched", 64), ("unbatched", 1)):
            args = RMAppArgs(size=f"{SIZE}_{name}", checkpoint_root=str(root / "ckpt"), max_batch_size=mbs,
                             batch_wait_timeout_s=0.005, num_replicas=1, threads=1)
            serve.run(build_app(args), name=f"rm_{name}", route_prefix=route(args.size))
            url = f"http://127.0.0.1:{port}{route(args.size)}/score"
            rps, lat = asyncio.run(_drive(url, "bench"))
            results[name] = (rps, np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3)
            serve.delete(f"rm_{name}")
            print(f"{name:9s} max_batch_size={mbs:<3d} {rps:8.1f} req/s   p50 {results[name][1]:7.1f} ms"
                  f"   p99 {results[name][2]:7.1f} ms", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"batching throughput ratio: {results['batched'][0] / results['unbatched'][0]:.1f}x "
          f"({CLIENTS} clients x {REQUESTS} one-item requests, 1 replica each; goal >= 5x)")


if __name__ == "__main__":
    main()
