"""The text environments (``plugins/environments/``) as a verl 0.9.1 agent loop: one sample is
one episode, played against verl's rollout servers, with the same token layout as the local
backend's ``core/backends/multiturn.py`` (see its docstring; a test checks verl's builder
against it).

**Registration** (verl's documented way): a YAML list at
``actor_rollout_ref.rollout.agent.agent_loop_config_path`` (``write_agent_config``)::

    - name: env_agent
      _target_: core.backends.verl_agent.EnvAgentLoop
      max_turn_tokens: 12          # tokens per policy turn (rl.max_new_tokens)

verl's ``AgentLoopWorker`` instantiates it with Hydra for every row whose ``agent_name`` is
``env_agent``; extra YAML keys are constructor keyword arguments. The class is built on first
access (module ``__getattr__``), so importing this module does not import verl.

**Rows**: the trial's parquet rows (``verl_trial.write_data``) plus an ``agent_name`` column
(``tag_parquet``); the episode (``env``, ``seed``, ``options``) comes from ``extra_info``, whose
``json`` field holds the record's full ``extra_info`` (as the reward bridge reads it).

**One episode** (``run``): the row's ``raw_prompt`` through verl's continuous-token builder;
then per turn one ``server_manager.generate`` (``max_tokens``: ``max_turn_tokens``, capped by
what is left of ``rollout.response_length``), merged as an assistant turn (mask 1, with its
log-probs when ``calculate_log_probs``); its decoded text (no special tokens) is the action;
``env.step`` runs in a thread; the observation is merged as a user turn (mask 0). The episode
ends when the environment says done, or when the next user turn would fill
``response_length`` (``truncated``). The last observation is not appended, so the response
ends with the policy's last token.

**Reward**: ``reward_score`` = the episode's return. verl then skips its reward loop for the
sample (``_compute_score`` runs only when ``reward_score`` is None), ``AgentLoopOutput.as_dict``
puts the score on the last response token (``rm_scores``), which becomes
``token_level_scores``. ``extra_fields["reward_extra_info"]`` (``acc`` = success, ``success``,
``return``, ``turns``, ``invalid``, ``truncated``, ``domain``, ``prompt_index``; as JSON strings
``actions`` and ``turn_tokens``, the (context fed, tokens generated) of every turn, which
``dump_flops`` turns into FLOPs) becomes columns of the validation dump
(``trainer.validation_data_dir``) and ``val-aux`` metrics; ``num_turns`` (chat messages: the
first prompt, every action and every appended observation) gives verl's ``num_turns/*``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

AGENT_NAME = "env_agent"
TARGET = f"{__name__}.EnvAgentLoop"


# --- what a verl trial needs -------------------------------------------------------------------------
def write_agent_config(path: Path, max_turn_tokens: int) -> Path:
    """Write the agent-loop YAML verl reads (``agent_loop_config_path``); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"- name: {AGENT_NAME}\n  _target_: {TARGET}\n"
                    f"  max_turn_tokens: {int(max_turn_tokens)}\n")
    return path


def tag_parquet(path: Path, agent_name: str = AGENT_NAME) -> int:
    """Add (or replace) the ``agent_name`` column of a parquet of verl rows; returns the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    if "agent_name" in table.column_names:
        table = table.drop(["agent_name"])
    table = table.append_column("agent_name", pa.array([agent_name] * table.num_rows, pa.string()))
    pq.write_table(table, path)
    return table.num_rows


def agent_overrides(config_path: Path, response_tokens: int) -> dict[str, Any]:
    """verl keys a multi-turn trial sets: the agent-loop file, and the conversation's token
    budget after the first prompt (every action and observation) as the response length."""
    return {"actor_rollout_ref.rollout.agent.agent_loop_config_path": str(Path(config_path).resolve()),
            "data.max_response_length": int(response_tokens)}


def episode_data(cfg) -> bool:
    """Whether a trial's dataset yields environment episodes (``env__`` rows): verl then plays
    them through this agent loop."""
    from core.plugins import registry
    return any(d.startswith("env__") for d in registry().get("datasets", cfg.data.dataset).data_sources)


def config_path(workdir: Path) -> Path:
    return Path(workdir).resolve() / "agent_loops.yaml"


def response_tokens(cfg) -> int:
    """The conversation's token budget after the first prompt (verl's response length): what a
    tiny model's context holds after the prompt (the local rollout's cap), else 4096; set
    ``verl.data.max_response_length`` to choose another."""
    arch = getattr(cfg.size, "arch", None)
    if arch is not None:
        return max(cfg.rl.max_new_tokens, arch.max_position_embeddings - cfg.rl.max_prompt_tokens)
    return 4096


def trial_overrides(cfg, workdir: Path) -> dict[str, Any]:
    """verl keys of a trial on episodes (``verl.verl_overrides`` adds them), else none."""
    return agent_overrides(config_path(workdir), response_tokens(cfg)) if episode_data(cfg) else {}


def prepare_trial(cfg, workdir: Path, paths) -> None:
    """A trial on episodes: the agent-loop YAML and ``agent_name`` on every row of its parquets."""
    if episode_data(cfg):
        write_agent_config(config_path(workdir), cfg.rl.max_new_tokens)
        for path in paths:
            tag_parquet(path)


def dump_flops(rows: list[dict], flop_model, cached: bool = False) -> float:
    """Rollout FLOPs of the episodes of a validation dump (its ``turn_tokens`` column): each turn
    a forward over its context and new tokens (no cache across turns, as the CPU ``hf`` rollout
    runs), or with ``cached`` one forward over each final conversation (vLLM/SGLang prefix
    caching)."""
    total = 0.0
    for row in rows:
        turns = json.loads(row["turn_tokens"])
        if cached:
            total += flop_model.forward([turns[-1][0] + turns[-1][1]]) if turns else 0.0
        else:
            total += sum(flop_model.forward([c + g]) for c, g in turns)
    return total


def dump_metrics(rows: list[dict]) -> dict[str, float]:
    """Mean return, success, turns and invalid actions per environment (``val/<env>/<name>``)
    and overall (``val/<name>``) of a validation dump's episodes; pass@k comes from
    ``verl_trial.parse_validation_dump`` (``acc`` is success)."""
    import numpy as np
    out: dict[str, float] = {}
    envs = np.array([str(r.get("domain")) for r in rows])
    for name in ("return", "success", "turns", "invalid"):
        values = np.array([float(r[name]) for r in rows])
        out[f"val/{name}"] = float(values.mean())
        for env in sorted(set(envs.tolist())):
            out[f"val/{env}/{name}"] = float(values[envs == env].mean())
    return out


def record_of(kwargs: dict) -> dict:
    """The dataset record of an agent-loop call (its kwargs are the parquet row's fields): the
    row with ``extra_info`` merged from its ``json`` field (the row's own keys win)."""
    extra = dict(kwargs.get("extra_info") or {})
    if isinstance(extra.get("json"), str):
        extra = {**json.loads(extra["json"]), **{k: v for k, v in extra.items() if k != "json"}}
    return {"data_source": kwargs.get("data_source", ""), "prompt": list(kwargs["raw_prompt"]),
            "extra_info": extra}


# --- the agent loop ------------------------------------------------------------------------------------
class _Episode:
    """The bookkeeping of one episode in verl."""

    def __init__(self, record: dict) -> None:
        from core.backends.multiturn import env_of
        self.name = env_of(record)[0]
        extra = record["extra_info"]
        self.domain, self.index = str(extra.get("domain") or self.name), int(extra.get("index", -1))
        self.ret, self.success, self.invalid, self.turns, self.truncated = 0.0, False, 0, 0, False
        self.rewards: list[float] = []
        self.actions: list[str] = []
        self.turn_tokens: list[tuple[int, int]] = []   # per turn: (context fed, tokens generated)
        self.messages = 1                           # chat messages so far: the first prompt
        self.timing = {"generate_sequences": 0.0, "tool_calls": 0.0, "num_preempted": -1}
        self.extra: dict = {}

    def stepped(self, action: str, reward: float, info: dict) -> None:
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.turns += 1
        self.ret += float(reward)
        self.invalid += int(bool(info.get("invalid")))
        self.success = bool(info.get("success"))
        self.truncated = bool(info.get("truncated"))

    def server_fields(self, fields: dict) -> None:
        """The rollout server's extra fields (weight versions), as verl's tool loop keeps them."""
        if not self.extra:
            self.extra.update(fields or {})
        elif (fields or {}).get("max_global_steps"):
            self.extra["max_global_steps"] = fields["max_global_steps"]

    def reward_extra_info(self) -> dict:
        return {"acc": float(self.success), "success": float(self.success), "return": self.ret,
                "turns": self.turns, "invalid": self.invalid, "truncated": float(self.truncated),
                "domain": self.domain, "prompt_index": self.index, "actions": json.dumps(self.actions),
                "turn_tokens": json.dumps(self.turn_tokens)}


class _EnvLoop:
    """The episode logic, mixed into verl's ``AgentLoopBase`` (``_loop_class``)."""

    def __init__(self, *args, max_turn_tokens: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.response_length = int(self.rollout_config.response_length)
        self.max_turn_tokens = int(max_turn_tokens or self.response_length)

    async def run(self, sampling_params: dict[str, Any], **kwargs):
        from core.backends.multiturn import make_env
        record = record_of(kwargs)
        ep = _Episode(record)
        env, obs = await self.loop.run_in_executor(None, make_env, record)
        try:
            if record["prompt"][-1]["content"] != obs:
                raise ValueError(f"{ep.name}: the row's prompt {record['prompt'][-1]['content']!r} is not "
                                 f"the environment's first observation {obs!r}")
            ids, n_prompt, mask, logprobs = await self._play(env, ep, list(record["prompt"]), sampling_params)
        finally:
            env.close()
        return self._output(ep, ids, n_prompt, mask, logprobs)

    async def _play(self, env, ep: _Episode, messages: list[dict], sampling_params: dict):
        from uuid import uuid4
        ids = await self.ct_build_initial_tokens(messages)
        n_prompt, mask = len(ids), []
        logprobs = [] if sampling_params.get("logprobs") else None
        request_id = uuid4().hex                     # one id per episode: a sticky session
        while (budget := self.response_length - len(mask)) > 0:
            params = {**sampling_params, "max_tokens": min(self.max_turn_tokens, budget)}
            t0 = time.perf_counter()
            out = await self.server_manager.generate(request_id=request_id, prompt_ids=ids,
                                                     sampling_params=params)
            ep.timing["generate_sequences"] += time.perf_counter() - t0
            ep.server_fields(out.extra_fields)
            ep.turn_tokens.append((len(ids), len(out.token_ids)))
            merged, mask, logprobs = await self.ct_merge_assistant_token(
                ids, out.token_ids, mask, logprobs,
                assistant_logprobs=out.log_probs if logprobs is not None else None)
            ids, ep.messages = merged.token_ids, ep.messages + 1
            action = self.tokenizer.decode(out.token_ids, skip_special_tokens=True)
            t0 = time.perf_counter()
            obs, reward, done, info = await self.loop.run_in_executor(None, env.step, action)
            ep.timing["tool_calls"] += time.perf_counter() - t0
            ep.stepped(action, reward, info)
            if done:
                return ids, n_prompt, mask, logprobs
            prev = messages + [{"role": "assistant", "content": action}]
            messages = prev + [{"role": "user", "content": obs}]
            merged, new_mask, new_logprobs = await self.ct_merge_context_msg(prev, messages, ids, mask,
                                                                             logprobs)
            if len(new_mask) >= self.response_length:   # no room for another action
                break
            ids, mask, logprobs, ep.messages = merged.token_ids, new_mask, new_logprobs, ep.messages + 1
        ep.truncated = True
        return ids, n_prompt, mask, logprobs

    def _output(self, ep: _Episode, ids: list[int], n_prompt: int, mask: list[int], logprobs):
        from verl.experimental.agent_loop.agent_loop import AgentLoopOutput
        extra = {**ep.extra, "turn_scores": ep.rewards, "tool_rewards": [],
                 "reward_extra_info": ep.reward_extra_info()}
        return AgentLoopOutput(prompt_ids=ids[:n_prompt], response_ids=ids[n_prompt:], response_mask=mask,
                               response_logprobs=logprobs or None, reward_score=ep.ret,
                               num_turns=ep.messages, metrics=ep.timing, extra_fields=extra)


def _loop_class():
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase
    body = {"__module__": __name__, "__qualname__": "EnvAgentLoop",
            "__doc__": "verl agent loop: one environment episode per sample (see the module)."}
    return type("EnvAgentLoop", (_EnvLoop, AgentLoopBase), body)


def __getattr__(name: str):
    # Hydra resolves ``_target_`` with getattr on this module: the class is built on first use
    if name == "EnvAgentLoop":
        cls = _loop_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
