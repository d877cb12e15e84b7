"""Batched multi-turn rollouts (core/backends/multiturn.py): the token layout and its masks (the
same sequence verl's Qwen continuous-token builder makes), returns equal to the environments'
rewards under a scripted policy that speaks through the tokenizer, finished episodes leaving
the batch, FLOPs per turn, pass@k over episodes, the context cap, and a policy-loss gradient
that is exactly zero on every environment token."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core import models
from core.backends import multiturn as mt
from core.backends import rollout as ro
from core.flops import FlopModel
from plugins.datasets.environments import load

IM_START, IM_END = models.IM_START, models.IM_END


@pytest.fixture(scope="module")
def tok():
    return models.build_char_tokenizer()


@pytest.fixture(scope="module")
def maze():
    return load("train", 12, domains=["maze"], difficulties=[1], seed=0)


def first_obs(text: str) -> str:
    return text.split(f"{IM_START}user\n", 1)[1].split(IM_END, 1)[0]


class ScriptedLM:
    """A stand-in for a causal LM: ``generate`` answers every row with ``policy(context, turn)``
    and EOS, through the tokenizer, and remembers each call's batch shape."""

    def __init__(self, tok, policy, max_positions: int = 64):
        self.tok, self.policy = tok, policy
        self.config = SimpleNamespace(max_position_embeddings=max_positions)
        self.shapes: list[tuple[int, int]] = []

    def generate(self, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, **_):
        self.shapes.append(tuple(input_ids.shape))
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            text = self.tok.decode(ids[mask.bool()])
            turn = text.count(f"{IM_START}assistant\n") - 1      # actions taken so far
            new = self.tok(self.policy(text, turn), add_special_tokens=False)["input_ids"] + [eos_token_id]
            rows.append(new[:max_new_tokens])
        out = torch.full((len(rows), max(map(len, rows))), pad_token_id)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
        return torch.cat([input_ids, out], dim=1)


def expert_of(records):
    """The records' expert actions, replayed by turn (records told apart by first observation)."""
    by_obs = {r["prompt"][0]["content"]: r["extra_info"]["expert"] for r in records}
    assert len(by_obs) == len(records), "records need distinct first observations"
    return lambda text, turn: by_obs[first_obs(text)][turn][1]


def distinct(records, n):
    seen, out = set(), []
    for r in records:
        if r["prompt"][0]["content"] not in seen:
            seen.add(r["prompt"][0]["content"])
            out.append(r)
    return out[:n]


@pytest.mark.parametrize("env", ["maze", "maze_po", "textnav", "wordle", "twenty_questions",
                                 "guess_my_city", "car_dealer"])
def test_the_scripted_expert_gets_the_environments_own_returns(tok, env):
    for record in load("train", 3, domains=[env], difficulties=[1, 2], seed=1):
        assert mt.is_episode(record) and not mt.is_episode({"data_source": "synthetic__arith"})
        lm = ScriptedLM(tok, expert_of([record]))
        roll = mt.rollout_episodes(lm, tok, [record], 2, max_new_tokens=40, max_len=4096)
        extra = record["extra_info"]
        assert roll.returns.tolist() == [extra["expert_return"]] * 2
        assert roll.success.tolist() == [extra["expert_success"]] * 2
        assert roll.turns.tolist() == [len(extra["expert"])] * 2
        assert roll.invalid.tolist() == [0, 0] and roll.envs == [env, env]
        assert roll.actions[0] == [a for _, a in extra["expert"]]


def test_layout_masks_policy_tokens_and_equals_verls_builder(tok, maze):
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
    record = max(maze, key=lambda r: len(r["extra_info"]["expert"]))
    expert = record["extra_info"]["expert"]
    assert len(expert) >= 2
    roll = mt.rollout_episodes(ScriptedLM(tok, expert_of([record])), tok, [record], 1, 12, max_len=4096)
    resp, mask = roll.response_ids[0], roll.response_mask[0]
    n = int(roll.response_attention[0].sum())
    assert mask[n:].sum() == 0 and (resp[n:] == tok.pad_token_id).all()
    # the policy's tokens are exactly its actions, each closed by EOS
    assert tok.decode(resp[:n][mask[:n].bool()]) == "".join(a + IM_END for _, a in expert)
    # the response ends with the last policy token (where the return goes)
    assert mask[n - 1] == 1 and resp[n - 1] == tok.eos_token_id
    assert int(mt.last_policy_index(roll)[0]) == n - 1
    assert mt.token_level_rewards(roll)[0, n - 1] == record["extra_info"]["expert_return"]
    # environment turns: separator, user turn with the observation, the opened assistant turn
    env_text = tok.decode(resp[:n][~mask[:n].bool()])
    turn = "\n{s}user\n{obs}{e}\n{s}assistant\n"
    assert env_text == "".join(turn.format(s=IM_START, e=IM_END, obs=obs) for obs, _ in expert[1:])
    # verl's Qwen continuous-token builder merges the same conversation to the same tokens and mask
    b = create_continuous_token_builder(tok, hf_model_type="qwen2")
    messages = list(record["prompt"])
    ids, vmask = b.build_initial_tokens(messages), []
    for k, (_, action) in enumerate(expert):
        gen = tok(action, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        merged = b.merge_assistant_tokens(ids, gen)
        vmask, _ = b.align_response_metadata(merged, vmask)
        ids = merged.token_ids
        if k + 1 < len(expert):
            prev = messages + [{"role": "assistant", "content": action}]
            messages = prev + [{"role": "user", "content": expert[k + 1][0]}]
            merged = b.merge_context_tokens(prev, messages, ids)
            vmask, _ = b.align_response_metadata(merged, vmask)
            ids = merged.token_ids
    P = int(roll.prompt_mask[0].sum())
    assert roll.prompt_ids[0, -P:].tolist() + resp[:n].tolist() == ids
    assert mask[:n].tolist() == vmask
    assert mt.expert_conversation(tok, record) == (ids, P, vmask)


def test_invalid_actions_count_and_max_turns_end_the_episode(tok, maze):
    roll = mt.rollout_episodes(ScriptedLM(tok, lambda text, turn: "fly"), tok, maze[:2], 3, 12, max_len=4096)
    assert roll.turns.tolist() == [10] * 6 and roll.invalid.tolist() == [10] * 6   # level 1: 10 turns
    assert roll.returns.tolist() == [-40.0] * 6 and not roll.success.any() and roll.truncated.all()


def test_finished_episodes_drop_out_of_the_batch(tok, maze):
    fast, slow = distinct(maze, 2)
    k = len(fast["extra_info"]["expert"])
    expert = expert_of([fast])
    start = fast["prompt"][0]["content"]
    policy = lambda text, turn: expert(text, turn) if first_obs(text) == start else "x"  # noqa: E731
    lm = ScriptedLM(tok, policy)
    G = 4
    roll = mt.rollout_episodes(lm, tok, [fast, slow], G, 12, max_len=4096)
    rows = [r for r, _ in lm.shapes]
    assert rows == [2 * G] * k + [G] * (10 - k)        # one generate per turn over the live ones
    assert [c[0] for c in roll.calls] == rows
    assert roll.turns.tolist() == [k] * G + [10] * G
    assert roll.success.tolist() == [True] * G + [False] * G
    assert [w for _, w in lm.shapes] == [c[1] for c in roll.calls]   # the padded context widths
    assert roll.attention_mask.shape == roll.input_ids.shape


def test_flops_are_counted_per_turn_over_the_whole_context(tok, maze):
    fast, slow = distinct(maze, 2)
    lm = ScriptedLM(tok, lambda text, turn: "x")
    roll = mt.rollout_episodes(lm, tok, [fast, slow], 2, 12, max_len=4096)
    fm = FlopModel.from_shape(64, 3, 4, 2, 176, len(tok))
    assert mt.rollout_flops(roll, fm) == sum(fm.forward([w + t] * n) for n, w, t in roll.calls)
    for i, turns in enumerate(roll.turn_tokens):
        assert len(turns) == roll.turns[i] == 10
        ctx = [c for c, _ in turns]
        assert ctx[0] == int(roll.prompt_mask[i].sum())              # turn 1 reads the prompt
        assert all(b > a + g for (a, g), b in zip(turns, ctx[1:]))   # then everything so far, env included
        assert ctx[-1] + turns[-1][1] == int(roll.attention_mask[i].sum())
    per_turn = mt.episode_flops(roll, fm)
    cached = mt.episode_flops(roll, fm, cached=True)
    assert per_turn[0] == sum(fm.forward([c + g]) for c, g in roll.turn_tokens[0])
    assert (per_turn > 3 * cached).all()          # ten prefills of a growing context vs one pass
    assert mt.rollout_flops(roll, fm) >= per_turn.sum()                 # padding costs too


def test_pass_at_k_over_episodes_per_environment(tok, maze):
    words = load("train", 2, domains=["wordle"], difficulties=[1], seed=0)
    lm = ScriptedLM(tok, lambda text, turn: "abcde")                     # not a word: invalid
    roll = mt.concat_episodes([mt.rollout_episodes(lm, tok, distinct(maze, 2), 4, 12, max_len=4096),
                               mt.rollout_episodes(lm, tok, words[:1], 4, 12, max_len=4096)],
                              [list(range(8)), list(range(4))], tok.pad_token_id)
    roll.success = np.array([1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    m = mt.episode_metrics(roll, n=4, k_max=4)
    assert m["val/maze/pass_at_1"] == pytest.approx((0.25 + 1.0) / 2)
    assert m["val/maze/pass_at_2"] == pytest.approx((0.5 + 1.0) / 2)     # 1 - C(3,2)/C(4,2) = 0.5
    assert m["val/wordle/pass_at_4"] == 0.0 and m["val/pass_at_4"] == pytest.approx(2 / 3)
    assert m["val/pass_at_1"] == pytest.approx((0.25 + 1.0 + 0.0) / 3)
    assert m["val/maze/return"] == -40.0 and m["val/wordle/return"] == -6.0
    assert m["val/maze/turns"] == 10 and m["val/wordle/turns"] == 6 and m["val/wordle/invalid"] == 6
    assert m["val/maze/success"] == pytest.approx(5 / 8) and m["val/creativity_index"] == m["val/pass_at_4"]
    assert roll.response_attention.shape == roll.response_ids.shape


def test_the_context_cap_ends_episodes_before_max_positions(tok, maze):
    record = max(maze, key=lambda r: len(r["extra_info"]["expert"]))
    lm = ScriptedLM(tok, expert_of([record]), max_positions=70)
    roll = mt.rollout_episodes(lm, tok, [record], 2, 12)                 # default: max positions
    assert roll.truncated.all() and roll.turns.tolist() == [1, 1]       # prompt ~43 + 2 + env ~35 > 70
    assert int(roll.attention_mask.sum(dim=1).max()) <= 70
    assert roll.response_mask[0, -1] == 1                               # it still ends on a policy token


@pytest.fixture(scope="module")
def tiny(tok):
    from transformers import AutoModelForCausalLM

    from core.config import Arch
    torch.manual_seed(0)
    arch = Arch(hidden_size=64, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=176)
    return AutoModelForCausalLM.from_config(models.qwen2_config(SimpleNamespace(arch=arch), len(tok))).eval()


def test_zero_gradient_on_environment_tokens(tok, tiny, maze):
    from omegaconf import OmegaConf
    from verl.trainer.ppo import core_algos
    torch.manual_seed(1)
    roll = mt.rollout_episodes(tiny, tok, distinct(maze, 2), 2, max_new_tokens=3, max_len=160)
    mask, R = roll.response_mask, roll.response_ids.shape[1]
    assert (roll.turns > 1).all() and ((roll.response_attention == 1) & (mask == 0)).any()
    kept = {}

    def keep(_module, _inputs, out):
        out.retain_grad()
        kept["logits"] = out

    hook = tiny.lm_head.register_forward_hook(keep)
    try:
        logp = ro.token_logprobs(tiny, roll.input_ids, roll.attention_mask, R)
    finally:
        hook.remove()
    adv = torch.randn_like(logp)             # non-zero everywhere: only the mask may stop it
    cfg = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2,
                            "clip_ratio_c": 3.0, "global_batch_info": {}})
    loss, _ = core_algos.get_policy_loss_fn("vanilla")(
        old_log_prob=logp.detach(), log_prob=logp, advantages=adv, response_mask=mask.float(),
        loss_agg_mode="token-mean", config=cfg)
    loss.backward()
    grad = kept["logits"].grad[:, :-1]       # (B, R, V): position j predicts response token j
    assert grad[mask == 0].abs().max().item() == 0.0                    # env tokens and padding
    assert (grad[mask == 1].abs().sum(dim=-1) > 0).all()                # every policy token learns
    tiny.zero_grad(set_to_none=True)


def test_greedy_turns_are_what_the_training_forward_predicts(tok, tiny, maze):
    roll = mt.rollout_episodes(tiny, tok, distinct(maze, 3), 1, max_new_tokens=4, max_len=200, temperature=0)
    with torch.no_grad():
        logits = tiny(input_ids=roll.input_ids, attention_mask=roll.attention_mask,
                      position_ids=(roll.attention_mask.cumsum(1) - 1).clamp(min=0)).logits
    R = roll.response_ids.shape[1]
    pred = logits[:, -R - 1:-1].argmax(-1)
    policy = roll.response_mask.bool()
    assert (roll.turns > 1).all()
    assert torch.equal(pred[policy], roll.response_ids[policy])   # left-padded turns = right-padded training


def test_trajectory_grpo_groups_a_records_episodes_and_leaves_env_tokens_out(tok, maze):
    """The local trainer's ``advantages`` on episodes: one group per record (same seed), the
    normalised return on every policy token of the episode and nothing on environment tokens."""
    from core.backends.local import Episodes, advantages
    fast, slow = distinct(maze, 2)
    start, expert = fast["prompt"][0]["content"], expert_of([fast])
    lm = ScriptedLM(tok, lambda text, turn: expert(text, turn) if first_obs(text) == start else "x")
    roll = mt.rollout_episodes(lm, tok, [fast, slow], 4, 12, max_len=4096)
    roll.returns[1] = roll.returns[3] = -40.0                 # two episodes of the first group fail
    adv = advantages(Episodes([fast, slow], roll, roll.returns, roll.success), 4)
    mask = roll.response_mask.bool()
    assert (adv[~mask] == 0).all()
    for i in range(8):                                        # one value per episode, on its policy tokens
        assert (adv[i][mask[i]] == adv[i, 0]).all()
    first = adv[:4, 0]
    assert first[0] > 0 > first[1] and first[0] == first[2] and first[1] == first[3]
    assert (adv[4:] == 0).all()                                # the second group: all returns equal
    token = mt.token_level_rewards(roll)
    assert torch.equal(token.sum(dim=1), torch.tensor(roll.returns, dtype=torch.float32))


def test_a_turn_budget_that_cuts_an_expert_action_is_refused(tok):
    """textnav's expert says "close basket" (12 characters + end of turn): a 10-token turn
    would cut it to an invalid action on every episode, so the grid refuses it up front."""
    from core.config import load as load_cfg
    from core.errors import ConfigError
    records = load("train", 40, domains=["textnav"], difficulties=[1], seed=0)
    longest = max(len(a) for r in records for _, a in r["extra_info"]["expert"])
    short = load_cfg("horizon", ["rl.max_new_tokens=10"])
    with pytest.raises(ConfigError, match=r"textnav's expert plays '.*'.*set rl.max_new_tokens >= ") as err:
        mt.check_action_budget(short, records, tok)
    assert err.value.key == "rl.max_new_tokens" and f">= {longest + 1}" in str(err.value)
    mt.check_action_budget(load_cfg("horizon", [f"rl.max_new_tokens={longest + 1}"]), records, tok)
