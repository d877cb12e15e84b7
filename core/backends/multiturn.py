"""Batched multi-turn rollouts of the text environments (``plugins/environments/``) for the
local backend: one conversation per episode, played turn by turn, all live episodes together.

A record names its episode (``extra_info``: ``env``, ``seed``, ``options``; the environments
dataset writes them). ``rollout_episodes`` plays G episodes per record: every turn is ONE
batched ``generate`` over every live episode (left-padded contexts); a turn ends at
``<|im_end|>`` (EOS) or after ``max_new_tokens``; the decoded turn is the action; the
environment's observation becomes the next user turn; finished episodes drop out of the next
turn's batch. An episode ends when the environment says done (goal, loss, its ``max_turns``)
or when the next turn would not fit in ``max_len`` tokens (``truncated``; default: the
model's ``max_position_embeddings``) or, with ``max_response``, in that many response tokens
(verl's rule for ``rollout.response_length``).

Token layout of one episode (ChatML, as ``core.models.CHAT_TEMPLATE`` writes it and as verl's
Qwen continuous-token builder merges turns, so both backends train on the same sequence)::

    prompt    <|im_start|>user\\n{obs_0}<|im_end|>\\n<|im_start|>assistant\\n     left-padded
    response  {a_1}<|im_end|>                                                 mask 1 (policy)
              \\n<|im_start|>user\\n{obs_1}<|im_end|>\\n<|im_start|>assistant\\n mask 0 (env)
              {a_2}<|im_end|>                                                 mask 1
              ...
              {a_T}<|im_end|>                                                 mask 1, last token
              <|endoftext|> ...                                               right padding

- ``response_mask`` is 1 exactly on the tokens the policy sampled, each turn's EOS included,
  and 0 on the environment's turns (the template's separator and markers and the observation)
  and on padding; ``response_attention`` is 1 on every real token; ``attention_mask`` (prompt
  mask + ``response_attention``) is what the model attends with.
- A turn cut at ``max_new_tokens`` has no EOS; the environment's turn then starts without the
  separator (verl's builder inserts ``\\n`` only after ``<|im_end|>``).
- The observation that answers the last action ("goal") is not appended: the policy never
  conditions on it, so the response ends with the last policy token, where the episode's
  return (the sum of the environment's rewards) sits (``token_level_rewards``).

FLOPs (``core.flops.FlopModel``): each turn's ``generate`` prefills the whole context so far
(the first prompt, every earlier action and observation: environment tokens are prompt
forwards, paid again every turn) and decodes the new tokens with a KV cache that does not
outlive the call. ``rollout_flops`` charges every call as executed: rows x (padded context +
new tokens), one forward each (the convention of ``FlopModel``: one forward over the final
length per generated sequence). ``episode_flops`` gives the unpadded per-episode cost, without
a cache across turns (sum over turns of forward(context_t + new_t)) or with one (vLLM/SGLang
prefix caching: forward(final length)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.backends import rollout as ro

_SYS, _USER = {"role": "system", "content": "s"}, {"role": "user", "content": "u"}


# --- records and environments ------------------------------------------------------------------
def env_of(record: dict) -> tuple[str, int, dict]:
    """(environment name, seed, factory options) of a record (its ``extra_info``)."""
    extra = record.get("extra_info") or {}
    try:
        return str(extra["env"]), int(extra["seed"]), dict(extra.get("options") or {})
    except KeyError as exc:
        raise ValueError(f"record {record.get('data_source', '?')!r} names no episode: extra_info needs "
                         f"`env` and `seed` (the environments dataset writes them)") from exc


def is_episode(record: dict) -> bool:
    """Whether a record is an environment episode (the environments dataset's ``env__`` rows)."""
    return str(record.get("data_source", "")).startswith("env__")


def make_env(record: dict):
    """A fresh environment for a record's episode, reset; (env, first observation)."""
    from core.plugins import registry
    name, seed, options = env_of(record)
    env = registry().get("environments", name).factory(**options)
    return env, env.reset(seed, record)


class ChatLayout:
    """Token ids of the chat template's pieces: the first prompt, and a user turn appended after
    an assistant turn (the template's separator after EOS, the user turn, the opened assistant
    turn), rendered as a suffix diff against a fixed prefix, as verl's builder does."""

    def __init__(self, tokenizer) -> None:
        self.tok, self.eos = tokenizer, tokenizer.eos_token_id
        self._base = self._ids([_SYS, _USER], False)
        closed = self._ids([_SYS, _USER, {"role": "assistant", "content": "x"}], False)
        self.sep = closed[max(i for i, t in enumerate(closed) if t == self.eos) + 1:]

    def _ids(self, messages: list[dict], generation_prompt: bool) -> list[int]:
        text = self.tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def prompt(self, messages: list[dict]) -> list[int]:
        return self._ids(list(messages), True)

    def user_turn(self, text: str, after_eos: bool) -> list[int]:
        full = self._ids([_SYS, _USER, {"role": "user", "content": text}], True)
        if full[:len(self._base)] != self._base:
            raise ValueError("the chat template is not append-only: a user turn changes what precedes it")
        return (self.sep if after_eos else []) + full[len(self._base):]


class _Episode:
    """One live conversation: its tokens, mask and the environment's bookkeeping."""

    def __init__(self, record: dict, layout: ChatLayout, max_len: int, max_response: int) -> None:
        self.name = env_of(record)[0]
        self.env, obs = make_env(record)
        messages = record.get("prompt") or [{"role": "user", "content": obs}]
        if messages[-1]["content"] != obs:
            raise ValueError(f"record {env_of(record)}: its prompt {messages[-1]['content']!r} is not the "
                             f"environment's first observation {obs!r} (options differ?)")
        self.layout, self.max_len, self.max_response = layout, max_len, max_response
        self.ids = layout.prompt(messages)
        self.n_prompt, self.mask = len(self.ids), []          # mask: over the response tokens
        self.ret, self.success, self.invalid, self.turns = 0.0, False, 0, 0
        self.done = self.truncated = len(self.ids) >= max_len
        self.turn_tokens: list[tuple[int, int]] = []          # (context fed, tokens generated)
        self.actions: list[str] = []

    def budget(self, max_new_tokens: int) -> int:
        return min(max_new_tokens, self.max_len - len(self.ids), self.max_response - len(self.mask))

    def act(self, gen: list[int], action: str) -> None:
        """Append the policy's turn (mask 1), step the environment, append its turn (mask 0)."""
        self.turn_tokens.append((len(self.ids), len(gen)))
        self.ids += gen
        self.mask += [1] * len(gen)
        self.actions.append(action)
        obs, reward, done, info = self.env.step(action)
        self.turns += 1
        self.ret += float(reward)
        self.invalid += int(bool(info.get("invalid")))
        self.success = bool(info.get("success"))
        self.truncated = bool(info.get("truncated"))
        if done:
            self.done = True
            return
        env_ids = self.layout.user_turn(obs, after_eos=bool(gen) and gen[-1] == self.layout.eos)
        if (len(self.ids) + len(env_ids) >= self.max_len       # no room left for another action
                or len(self.mask) + len(env_ids) >= self.max_response):
            self.done = self.truncated = True
            return
        self.ids += env_ids
        self.mask += [0] * len(env_ids)


def expert_conversation(tokenizer, record: dict, max_len: int = 1 << 30) -> tuple[list[int], int, list[int]]:
    """The expert's episode of a record (``extra_info.expert``, its actions replayed in the
    environment) in the rollout's token layout: (token ids, prompt length, response mask), the
    supervised data of an environment warm start (loss where the mask is 1)."""
    layout = ChatLayout(tokenizer)
    e = _Episode(record, layout, max_len, max_len)
    try:
        for _obs, action in record["extra_info"]["expert"]:
            if e.done:
                break
            e.act(tokenizer(action, add_special_tokens=False)["input_ids"] + [layout.eos], action)
    finally:
        e.env.close()
    return e.ids, e.n_prompt, e.mask


def check_action_budget(cfg, records: list[dict], tokenizer) -> None:
    """Every expert action must fit in a policy turn (``rl.max_new_tokens``, end-of-turn token
    included): a budget shorter than the environment's own actions cuts them ("close basket"
    in 10 characters is "close bask", an invalid action) and no episode can ever succeed."""
    from core.errors import ConfigError
    eos = 1 if ChatLayout(tokenizer).eos is not None else 0
    need, longest = 0, None
    for r in records:
        for _obs, action in (r.get("extra_info") or {}).get("expert") or ():
            n = len(tokenizer(action, add_special_tokens=False)["input_ids"]) + eos
            if n > need:
                need, longest = n, (env_of(r)[0], action)
    if need > cfg.rl.max_new_tokens:
        raise ConfigError("rl.max_new_tokens", cfg.rl.max_new_tokens,
                          f"a policy turn must hold the environment's longest action: {longest[0]}'s "
                          f"expert plays {longest[1]!r}, {need} tokens with the end-of-turn token; "
                          f"set rl.max_new_tokens >= {need}")


# --- the rollout -------------------------------------------------------------------------------
@dataclass
class EpisodeRollout(ro.Rollout):
    """Episodes as a ``Rollout`` (rows grouped by record: record i is rows i*G..i*G+G-1), with
    the layout of the module docstring. Shapes: (B, P) prompt, (B, R) response, (B,) arrays."""
    response_attention: torch.Tensor   # 1 on every real response token, policy's and env's
    returns: np.ndarray                 # sum of the environment's rewards
    success: np.ndarray                 # bool
    turns: np.ndarray                   # actions taken
    invalid: np.ndarray                 # invalid actions
    truncated: np.ndarray               # ended by max_turns or by the context limit
    envs: list[str]                     # environment name per row
    actions: list[list[str]]            # the decoded turns (what the environment received)
    turn_tokens: list[list[tuple[int, int]]]   # per turn: (context tokens fed, tokens generated)
    calls: list[tuple[int, int, int]]   # per batched generate: (rows, context width, new tokens)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_attention], dim=1)


@torch.no_grad()
def _generate(model, tokenizer, contexts: list[list[int]], max_new: int, temperature: float,
              top_p: float) -> tuple[list[list[int]], tuple[int, int, int]]:
    """One batched ``generate`` over left-padded contexts: each row's new tokens up to and
    including the first EOS, and the call's (rows, width, new tokens) for FLOPs."""
    pad, eos, width = tokenizer.pad_token_id, tokenizer.eos_token_id, max(map(len, contexts))
    ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, c in enumerate(contexts):
        ids[i, width - len(c):] = torch.tensor(c)
        mask[i, width - len(c):] = 1
    sampling = (dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0
                else dict(do_sample=False))
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, eos_token_id=eos,
                         pad_token_id=pad, **sampling)
    new = out[:, width:].tolist()
    gens = [row[:row.index(eos) + 1] if eos in row else row for row in new]
    return gens, (len(contexts), width, out.shape[1] - width)


def rollout_episodes(model, tokenizer, records: list[dict], group_size: int, max_new_tokens: int,
                     temperature: float = 1.0, top_p: float = 1.0, max_len: int | None = None,
                     max_response: int | None = None) -> EpisodeRollout:
    """``group_size`` episodes of each record's environment and seed, played together turn by
    turn (the module docstring says how). ``max_len`` caps prompt + response tokens (default:
    the model's max positions); ``max_response`` the response alone, as verl's
    ``rollout.response_length`` does (both cut an episode where the next turn would not fit)."""
    max_len = int(max_len or model.config.max_position_embeddings)
    max_response = int(max_response or max_len)
    layout = ChatLayout(tokenizer)
    episodes: list[_Episode] = []
    calls: list[tuple[int, int, int]] = []
    try:
        for r in records:
            episodes += [_Episode(r, layout, max_len, max_response) for _ in range(group_size)]
        while live := [e for e in episodes if not e.done]:
            budgets = [e.budget(max_new_tokens) for e in live]
            gens, call = _generate(model, tokenizer, [e.ids for e in live], max(budgets), temperature, top_p)
            calls.append(call)
            for e, gen, b in zip(live, gens, budgets):
                gen = gen[:b]
                e.act(gen, tokenizer.decode(gen, skip_special_tokens=True))
    finally:
        for e in episodes:
            e.env.close()
    return _collate(episodes, tokenizer, calls)


def _collate(episodes: list[_Episode], tokenizer, calls) -> EpisodeRollout:
    pad = tokenizer.pad_token_id
    P = max(e.n_prompt for e in episodes)
    R = max(1, max(len(e.mask) for e in episodes))
    B = len(episodes)
    prompt_ids, prompt_mask = torch.full((B, P), pad, dtype=torch.long), torch.zeros(B, P, dtype=torch.long)
    resp_ids, resp_mask = torch.full((B, R), pad, dtype=torch.long), torch.zeros(B, R, dtype=torch.long)
    resp_attn = torch.zeros(B, R, dtype=torch.long)
    for i, e in enumerate(episodes):
        prompt_ids[i, P - e.n_prompt:] = torch.tensor(e.ids[:e.n_prompt])
        prompt_mask[i, P - e.n_prompt:] = 1
        n = len(e.mask)
        if n:
            resp_ids[i, :n] = torch.tensor(e.ids[e.n_prompt:])
            resp_mask[i, :n] = torch.tensor(e.mask)
            resp_attn[i, :n] = 1
    texts = tokenizer.batch_decode([e.ids[e.n_prompt:] for e in episodes], skip_special_tokens=True)
    arr = lambda f, dt: np.array([f(e) for e in episodes], dtype=dt)   # noqa: E731
    return EpisodeRollout(
        prompt_ids, prompt_mask, resp_ids, resp_mask, texts, resp_attn,
        returns=arr(lambda e: e.ret, float), success=arr(lambda e: e.success, bool),
        turns=arr(lambda e: e.turns, int), invalid=arr(lambda e: e.invalid, int),
        truncated=arr(lambda e: e.truncated, bool), envs=[e.name for e in episodes],
        actions=[e.actions for e in episodes], turn_tokens=[e.turn_tokens for e in episodes],
        calls=list(calls))


def concat_episodes(parts: list[EpisodeRollout], rows: list[list[int]], pad_id: int) -> EpisodeRollout:
    """The given rows of several rollouts as one (a step whose groups came from several rounds,
    an evaluation in chunks): prompts re-padded on the left, responses on the right."""
    P = max(p.prompt_ids.shape[1] for p in parts)
    R = max(p.response_ids.shape[1] for p in parts)
    pick = [(p, idx) for p, idx in zip(parts, rows) if idx]

    def cat(field: str, width: int, left: bool, value: int) -> torch.Tensor:
        out = []
        for p, idx in pick:
            t = getattr(p, field)
            fill = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype)
            out.append(torch.cat([fill, t] if left else [t, fill], dim=1)[idx])
        return torch.cat(out)

    arr = lambda f: np.concatenate([np.asarray(getattr(p, f))[idx] for p, idx in pick])   # noqa: E731
    lst = lambda f: [getattr(p, f)[i] for p, idx in pick for i in idx]                    # noqa: E731
    return EpisodeRollout(
        cat("prompt_ids", P, True, pad_id), cat("prompt_mask", P, True, 0),
        cat("response_ids", R, False, pad_id), cat("response_mask", R, False, 0), lst("texts"),
        cat("response_attention", R, False, 0), returns=arr("returns"), success=arr("success"),
        turns=arr("turns"), invalid=arr("invalid"), truncated=arr("truncated"), envs=lst("envs"),
        actions=lst("actions"), turn_tokens=lst("turn_tokens"), calls=[c for p in parts for c in p.calls])


# --- rewards, FLOPs, metrics ---------------------------------------------------------------------
def last_policy_index(roll: EpisodeRollout) -> torch.Tensor:
    """(B,) position in the response of each episode's last policy token (0 when it has none)."""
    R = roll.response_mask.shape[1]
    pos = torch.arange(R).expand_as(roll.response_mask)
    last = torch.where(roll.response_mask.bool(), pos, torch.full_like(pos, -1)).max(dim=1).values
    return last.clamp(min=0)


def token_level_rewards(roll: EpisodeRollout) -> torch.Tensor:
    """(B, R) zeros with each episode's return on its last policy token (verl's outcome-reward
    layout; GRPO then normalises the returns within each record's G episodes)."""
    out = torch.zeros(roll.response_mask.shape, dtype=torch.float32)
    out[torch.arange(out.shape[0]), last_policy_index(roll)] = torch.tensor(roll.returns, dtype=torch.float32)
    return out


def rollout_flops(roll: EpisodeRollout, flop_model) -> float:
    """FLOPs the rollout spent as executed: every turn's batched ``generate`` ran rows x (padded
    context width + new tokens), the whole context so far again (no KV cache across calls)."""
    return float(sum(flop_model.forward([w + t] * rows) for rows, w, t in roll.calls))


def episode_flops(roll: EpisodeRollout, flop_model, cached: bool = False) -> np.ndarray:
    """Per-episode rollout FLOPs without padding: each turn a forward over its context and new
    tokens (``cached=False``: a fresh prefill per turn, as here and verl's CPU ``hf`` rollout),
    or one forward over the final conversation (``cached=True``: prefix caching across turns)."""
    if cached:
        lengths = roll.attention_mask.sum(dim=1).tolist()
        return np.array([flop_model.forward([n]) for n in lengths])
    return np.array([sum(flop_model.forward([c + g]) for c, g in turns) for turns in roll.turn_tokens])


def train_metrics(roll: EpisodeRollout) -> dict[str, float]:
    """What a training step reports about its episodes."""
    return {"train/reward_mean": float(roll.returns.mean()), "train/acc_mean": float(roll.success.mean()),
            "train/turns_mean": float(roll.turns.mean()), "train/invalid_mean": float(roll.invalid.mean()),
            "train/truncated_frac": float(roll.truncated.mean())}


def episode_metrics(roll: EpisodeRollout, n: int, k_max: int, prefix: str = "val") -> dict[str, float]:
    """pass@k over episodes (an episode is correct when it succeeds; the n episodes of a record
    are its samples) per environment and overall, with mean return, success rate and turns:
    ``val/<env>/pass_at_<k>``, ``val/pass_at_<k>``, ``val/<env>/{return,success,turns}``."""
    from core.metrics import pass_at_k_metrics
    envs = np.array(roll.envs)
    per_record = envs[::n].tolist()
    out = pass_at_k_metrics(roll.success.reshape(-1, n), per_record, min(k_max, n), prefix)
    for name, values in (("return", roll.returns), ("success", roll.success), ("turns", roll.turns),
                         ("invalid", roll.invalid)):
        out[f"{prefix}/{name}"] = float(np.mean(values))
        for env in sorted(set(per_record)):
            out[f"{prefix}/{env}/{name}"] = float(np.mean(values[envs == env]))
    out[f"{prefix}/response_length"] = float(roll.response_mask.sum(dim=1).float().mean())
    return out


def evaluate_episodes(model, tokenizer, records: list[dict], n: int, k_max: int, max_new_tokens: int,
                      temperature: float = 1.0, top_p: float = 1.0, max_len: int | None = None,
                      max_response: int | None = None, flop_model=None,
                      chunk: int = 512) -> tuple[dict[str, float], float, np.ndarray]:
    """``n`` episodes per eval record, ``chunk`` rows at a time: (``episode_metrics``, rollout
    FLOPs as executed, per-record pass@1), as ``local.evaluate`` returns them."""
    parts, flops = [], 0.0
    per = max(1, chunk // n)
    for i in range(0, len(records), per):
        roll = rollout_episodes(model, tokenizer, records[i:i + per], n, max_new_tokens, temperature,
                                top_p, max_len, max_response)
        flops += rollout_flops(roll, flop_model) if flop_model is not None else 0.0
        parts.append(roll)
    roll = parts[0] if len(parts) == 1 else concat_episodes(
        parts, [list(range(len(p.envs))) for p in parts], tokenizer.pad_token_id)
    return episode_metrics(roll, n, k_max), flops, roll.success.reshape(-1, n).mean(axis=1)


# --- the local trainer's episode stages (core/backends/local.py dispatches here) ------------------
def expert_sft_batch(tokenizer, records: list[dict], max_len: int | None = None):
    """Input ids, attention mask and labels (-100 except on the expert's own tokens) of the
    records' expert episodes in the rollout's layout, left-padded as ``sft.sft_batch``: the
    environment warm start (and the ``rl.algorithm=sft`` control) trains on the policy's turns
    only, never on the environment's."""
    convs = [expert_conversation(tokenizer, r, max_len or (1 << 30)) for r in records]
    width = max(len(ids) for ids, _, _ in convs)
    B = len(convs)
    ids = torch.full((B, width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(B, width, dtype=torch.long)
    labels = torch.full((B, width), -100, dtype=torch.long)
    for i, (seq, n_prompt, resp_mask) in enumerate(convs):
        off = width - len(seq)
        ids[i, off:] = torch.tensor(seq)
        mask[i, off:] = 1
        policy = torch.tensor([0] * n_prompt + resp_mask, dtype=torch.bool)
        labels[i, off:][policy] = torch.tensor(seq)[policy]
    return ids, mask, labels


def play(model, tokenizer, records: list[dict], group_size: int, cfg, flop_model=None,
         training: bool = True) -> tuple[EpisodeRollout, float]:
    """A trial's episodes (``rl.*`` sampling for training, ``eval.*`` for evaluation), capped at
    the model's context: (rollout, rollout FLOPs as executed)."""
    temperature, top_p = ((cfg.rl.temperature, cfg.rl.top_p) if training
                          else (cfg.eval.temperature, cfg.eval.top_p))
    roll = rollout_episodes(model, tokenizer, records, group_size, cfg.rl.max_new_tokens, temperature, top_p)
    return roll, (rollout_flops(roll, flop_model) if flop_model is not None else 0.0)


def evaluate_trial(model, tokenizer, records: list[dict], cfg, flop_model) -> tuple[dict, float, np.ndarray]:
    """``local.evaluate`` on episodes: ``eval.n_samples`` episodes per record; pass@k with
    success as correctness, mean return, success, turns and invalid actions per environment."""
    return evaluate_episodes(model, tokenizer, records, cfg.eval.n_samples, cfg.eval.k_max,
                             cfg.rl.max_new_tokens, cfg.eval.temperature, cfg.eval.top_p,
                             flop_model=flop_model)
