"""An ``hf`` rollout for verl 0.9.1: transformers' ``generate`` served by a Ray actor.

verl's V1 trainer talks to rollouts through three objects, each registered the public way:

- ``HFRolloutServer`` (a Ray actor, one per replica, named ``hf_server_<replica>_<node>``):
  token-in-token-out ``generate(prompt_ids, sampling_params, request_id) -> TokenOutput`` with
  the log-prob of every sampled token under the rollout's sampling distribution (logits /
  temperature, as the trainer recomputes them). Requests arrive one per sample from verl's
  agent loops; the actor gathers those that arrive within a few milliseconds into one batched,
  left-padded ``generate`` (grouped by sampling settings), which is what makes it usable.
  ``load_weights`` swaps in the trainer's current weights.
- ``HFServerAdapter`` (verl's ``BaseRollout``, built inside the trainer's hybrid worker):
  on every weight sync (``update_weights``) it gathers the trainer's per-tensor parameters
  and sends them to its server actor. A test checks the sync through the rollout/trainer
  log-prob gap (``rollout_corr/kl``): about 1e-3 with it, 0.08-0.16 without.
- ``HFReplica`` (verl's ``RolloutReplica``): starts the server actor and exposes its handle.

Sleep, wake-up and KV-cache calls are no-ops: the model lives in CPU memory beside the trainer.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from typing import Any

logger = logging.getLogger(__name__)

BATCH_WINDOW_S = 0.01      # gather requests that arrive within this window into one generate
ADAPTER_FQN = "core.backends.verl_cpu.hf_rollout.HFServerAdapter"
# Diagnostic switch (tests): "1" skips every weight sync, so the rollout keeps the initial
# weights while the trainer moves on; rollout_corr/kl then shows the gap a broken sync makes.
NO_SYNC_ENV = "ARL_HF_ROLLOUT_NO_SYNC"


def _server_name(replica_rank: int, node_rank: int = 0) -> str:
    return f"hf_server_{replica_rank}_{node_rank}"


class HFRolloutServer:
    """The rollout engine: a causal LM in CPU memory, batched sampling, weight reloads."""

    def __init__(self, config, model_config, replica_rank: int = 0, node_rank: int = 0) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from verl.utils.config import omega_conf_to_dataclass
        self.config = omega_conf_to_dataclass(config)
        self.model_config = model_config
        path = getattr(model_config, "local_path", None) or model_config.path
        torch.manual_seed(int(getattr(self.config, "seed", 0) or 0) + replica_rank)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        eos = getattr(self.model.generation_config, "eos_token_id", None) or self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.replica_rank, self.global_steps, self.weight_version = replica_rank, None, 0
        self._pending: list[tuple[list[int], dict, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    # --- verl's server interface ------------------------------------------------------------------
    def get_server_address(self) -> tuple[str, int]:
        import ray
        return ray.util.get_node_ip_address(), 0    # no HTTP server: token-in-token-out only

    async def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any], request_id: str,
                       **_: Any):
        from verl.workers.rollout.replica import TokenOutput
        prompt_ids = [int(t) for t in prompt_ids]
        params = dict(sampling_params)
        limit = self.config.prompt_length + self.config.response_length - len(prompt_ids)
        max_tokens = int(params.pop("max_tokens", params.pop("max_new_tokens", self.config.response_length)))
        params["max_tokens"] = max(1, min(max_tokens, self.config.response_length, limit))
        future = asyncio.get_running_loop().create_future()
        self._pending.append((prompt_ids, params, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        ids, logprobs = await future
        # global_steps: the weights' version, which verl's trainer checks for staleness
        return TokenOutput(token_ids=ids, log_probs=logprobs if params.get("logprobs") else None,
                           stop_reason="completed", extra_fields={"global_steps": self.global_steps})

    async def _drain(self) -> None:
        await asyncio.sleep(BATCH_WINDOW_S)
        async with self._lock:
            while self._pending:
                batch, self._pending = self._pending, []
                groups: dict[tuple, list] = {}
                for item in batch:
                    p = item[1]
                    key = (float(p.get("temperature", 1.0)), float(p.get("top_p", 1.0)),
                           int(p.get("top_k", -1) or -1))
                    groups.setdefault(key, []).append(item)
                for key, items in groups.items():
                    try:
                        results = await asyncio.to_thread(self._generate_batch, key, items)
                    except Exception as exc:   # one bad batch fails its own requests only
                        for _, _, fut in items:
                            if not fut.done():
                                fut.set_exception(exc)
                        continue
                    for (_, _, fut), res in zip(items, results):
                        if not fut.done():
                            fut.set_result(res)

    def _generate_batch(self, key: tuple, items: list) -> list[tuple[list[int], list[float]]]:
        import torch
        temperature, top_p, top_k = key
        prompts = [ids for ids, _, _ in items]
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        new = max(p["max_tokens"] for _, p, _ in items)
        greedy = temperature <= 0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=not greedy,
                temperature=None if greedy else temperature, top_p=None if greedy else top_p,
                top_k=0 if top_k <= 0 else top_k, eos_token_id=sorted(self.eos_ids),
                pad_token_id=self.pad_id, output_logits=True, return_dict_in_generate=True)
        seqs = out.sequences[:, width:]
        logits = torch.stack(out.logits, dim=1).float()              # (B, T, V) raw logits
        logp = torch.log_softmax(logits / (temperature if temperature > 0 else 1.0), dim=-1)
        chosen = logp.gather(-1, seqs[:, :logp.shape[1]].unsqueeze(-1)).squeeze(-1)
        results = []
        for i, (_, params, _) in enumerate(items):
            row, n = seqs[i].tolist(), params["max_tokens"]
            end = next((j + 1 for j, t in enumerate(row[:n]) if t in self.eos_ids), min(n, len(row)))
            results.append((row[:end], chosen[i, :end].tolist()))
        return results

    def load_weights(self, state: dict, version: int | None = None) -> int:
        """Load the trainer's weights (HF parameter names); returns how many tensors loaded.
        ``state_dict()`` shares storage with the model and names tied weights (``lm_head``)."""
        import torch
        own = self.model.state_dict()
        unknown = [k for k in state if k not in own]
        if unknown:
            raise KeyError(f"weights {unknown[:5]} are not parameters of the rollout model")
        with torch.no_grad():
            for name, tensor in state.items():
                own[name].copy_(tensor.to(own[name].dtype))
        self.weight_version = version if version is not None else self.weight_version + 1
        return len(state)

    def get_weight_version(self) -> int:
        return self.weight_version

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    async def wake_up(self, tags: list[str] | None = None) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def wait_for_requests_to_drain(self) -> None:
        while self._pending or (self._drainer is not None and not self._drainer.done()):
            await asyncio.sleep(BATCH_WINDOW_S)

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        return {"aborted": 0}

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True) -> dict:
        return {"aborted": 0}

    async def resume_generation(self) -> None:
        return None

    async def resume_engine_generation(self) -> None:
        return None

    async def open_submission_gate(self) -> None:
        return None

    async def start_profile(self, **kwargs) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


class _Adapter:
    """verl's rollout object in the trainer's hybrid worker (its ``BaseRollout`` interface):
    pushes weights to the server. Mixed into ``BaseRollout`` by ``_adapter_class``."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1) -> None:
        super().__init__(config, model_config, device_mesh)   # BaseRollout's
        rank = int(os.environ.get("RANK", 0))
        world = (self.config.tensor_model_parallel_size * self.config.data_parallel_size
                 * self.config.pipeline_model_parallel_size)
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.rollout_rank = rank % world
        self.server_handle = None
        self.version = 0
        self.sleep_level = 1

    def _server(self):
        import ray
        if self.rollout_rank != 0:
            return None
        if self.server_handle is None:
            self.server_handle = ray.get_actor(_server_name(self.replica_rank))
        return self.server_handle

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(self, weights, global_steps: int | None = None,
                             wire_format: str = "named_tensors", **kwargs) -> None:
        from verl.workers.rollout.utils import ensure_async_iterator
        if wire_format != "named_tensors":
            raise ValueError(f"the hf rollout takes wire_format='named_tensors', got {wire_format!r}")
        start = time.time()
        state = {}
        async for name, tensor in ensure_async_iterator(weights):
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = full.detach().to("cpu").clone()
        server = self._server()
        if server is None:
            return
        if os.environ.get(NO_SYNC_ENV) != "1":
            self.version += 1
            await server.load_weights.remote(state, self.version)
        if global_steps is not None:
            await server.set_global_steps.remote(global_steps)
        logger.info("hf rollout: %d tensors synced in %.2fs", len(state), time.time() - start)


def _adapter_class():
    from verl.workers.rollout.base import BaseRollout
    return type("HFServerAdapter", (_Adapter, BaseRollout), {"__module__": __name__})


def __getattr__(name: str):
    # verl's rollout-class table imports ``HFServerAdapter`` from this module by name; the class
    # is built on first access so that importing this module stays cheap.
    if name == "HFServerAdapter":
        cls = _adapter_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _replica_class():
    from verl.workers.rollout.replica import RolloutReplica

    class HFReplica(RolloutReplica):
        """One ``HFRolloutServer`` actor per replica (tensor/pipeline parallel size 1)."""

        async def launch_servers(self) -> None:
            import ray
            server_cls = ray.remote(HFRolloutServer)
            name = _server_name(self.replica_rank) + (self.name_suffix or "")
            server = server_cls.options(name=name, num_cpus=0, max_concurrency=self.max_concurrency).remote(
                config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
            self.servers = [server]
            host, port = await server.get_server_address.remote()
            self._server_handle = server
            self._server_address = f"{host}:{port}"

        def rollout_worker_use_gpu(self) -> bool:
            return False

    return HFReplica


ROLLOUT = "hf"


def register() -> None:
    """Register the ``hf`` rollout in verl's replica registry and rollout-class table."""
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry
    RolloutReplicaRegistry.register(ROLLOUT, _replica_class)
    base._ROLLOUT_REGISTRY[(ROLLOUT, "async")] = ADAPTER_FQN


def check_interfaces() -> list[str]:
    """What this module relies on in verl; each missing piece is named."""
    problems = []
    from verl.workers.rollout import base, replica
    if not hasattr(replica, "RolloutReplicaRegistry") or not hasattr(replica.RolloutReplicaRegistry, "register"):
        problems.append("verl.workers.rollout.replica.RolloutReplicaRegistry.register")
    if not isinstance(getattr(base, "_ROLLOUT_REGISTRY", None), dict):
        problems.append("verl.workers.rollout.base._ROLLOUT_REGISTRY (rollout name, mode) -> class path")
    if "launch_servers" not in getattr(replica.RolloutReplica, "__abstractmethods__", ()):
        problems.append("verl.workers.rollout.replica.RolloutReplica.launch_servers (abstract)")
    abstract = set(getattr(base.BaseRollout, "__abstractmethods__", ()))
    if abstract - {"resume", "update_weights", "release"}:
        problems.append(f"verl.workers.rollout.base.BaseRollout abstract methods changed: {sorted(abstract)}")
    fields = getattr(replica.TokenOutput, "model_fields", {})
    if not {"token_ids", "log_probs", "stop_reason"} <= set(fields):
        problems.append("verl.workers.rollout.replica.TokenOutput(token_ids, log_probs, stop_reason)")
    from verl.experimental.agent_loop import agent_loop
    src = inspect.getsource(agent_loop)
    if "logprobs=config.calculate_log_probs" not in src.replace(" ", ""):
        problems.append("agent loop sampling params (temperature, top_p, top_k, logprobs) sent to generate")
    return problems
