"""The environments as a verl 0.9.1 agent loop (core/backends/verl_agent.py): in process against a
scripted rollout server (the same tokens, mask and return as the local backend's rollout), and
verl's real main_ppo on the CPU for 2 steps on maze level 1 with the loop registered through
``agent_loop_config_path`` and rows carrying ``agent_name``."""
import asyncio
import json
from pathlib import Path

import pytest

from core import models
from core.backends import multiturn as mt
from core.backends import verl_agent as va
from plugins.datasets.environments import load
from tests.core.test_multiturn import ScriptedLM


class ScriptedServer:
    """verl's ``server_manager`` stand-in: answers with ``policy(context, turn)`` and EOS."""

    def __init__(self, tok, policy):
        self.tok, self.policy, self.requests = tok, policy, []

    async def generate(self, request_id, prompt_ids, sampling_params, **_):
        from verl.workers.rollout.replica import TokenOutput
        self.requests.append((request_id, len(prompt_ids), sampling_params["max_tokens"]))
        text = self.tok.decode(prompt_ids)
        turn = text.count("<|im_start|>assistant\n") - 1
        ids = self.tok(self.policy(text, turn), add_special_tokens=False)["input_ids"]
        ids = ids + [self.tok.eos_token_id]
        ids = ids[:sampling_params["max_tokens"]]
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), stop_reason="completed",
                           extra_fields={"min_global_steps": 3, "max_global_steps": 3})


def play(tok, server, record, response_length=4096, max_turn_tokens=12):
    """One ``EnvAgentLoop.run`` on a row made from ``record`` the way the trial writes it."""
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap
    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"response_length": response_length,
                                                                 "prompt_length": 64}}, "data": {}})
    row_extra = {"domain": "maze", "index": 5, "json": json.dumps(record["extra_info"])}

    async def main():
        loop = va.EnvAgentLoop(trainer_config=DictConfigWrap(config), server_manager=server, tokenizer=tok,
                               processor=None, dataset_cls=None, data_config=DictConfigWrap(config.data),
                               hf_model_type="qwen2", name=va.AGENT_NAME, max_turn_tokens=max_turn_tokens)
        return await loop.run({"temperature": 1.0, "top_p": 1.0, "logprobs": True},
                              raw_prompt=record["prompt"], extra_info=row_extra,
                              data_source=record["data_source"], agent_name=va.AGENT_NAME)
    return asyncio.run(main())


def test_the_agent_loop_plays_the_expert_as_the_local_rollout_does():
    tok = models.build_char_tokenizer()
    records = load("train", 6, domains=["maze"], difficulties=[1], seed=0)
    record = max(records, key=lambda r: len(r["extra_info"]["expert"]))
    expert = [a for _, a in record["extra_info"]["expert"]]
    server = ScriptedServer(tok, lambda text, turn: expert[turn])
    out = play(tok, server, record)
    ids, n_prompt, mask = mt.expert_conversation(tok, record)
    assert out.prompt_ids == ids[:n_prompt] and out.response_ids == ids[n_prompt:]
    assert out.response_mask == mask and mask[-1] == 1
    assert out.response_logprobs == [-0.5 if m else 0.0 for m in mask]
    assert out.reward_score == record["extra_info"]["expert_return"]
    assert out.num_turns == 2 * len(expert)                      # prompt + T actions + T-1 observations
    info = out.extra_fields["reward_extra_info"]
    assert info["acc"] == 1.0 and info["turns"] == len(expert) and info["prompt_index"] == 5
    assert json.loads(info["actions"]) == expert and info["domain"] == "maze"
    contexts = [c for c, _ in json.loads(info["turn_tokens"])]
    assert contexts[0] == n_prompt and len(contexts) == len(expert)
    assert contexts[-1] + json.loads(info["turn_tokens"])[-1][1] == len(ids)
    from core.flops import FlopModel
    fm = FlopModel.from_shape(64, 3, 4, 2, 176, len(tok))
    lm = ScriptedLM(tok, lambda text, turn: expert[turn])
    roll = mt.rollout_episodes(lm, tok, [record], 1, 12, max_len=4096)
    for cached in (False, True):                          # the dump's FLOPs = the local rollout's
        expected = float(mt.episode_flops(roll, fm, cached)[0])
        assert va.dump_flops([info], fm, cached) == pytest.approx(expected)
    assert out.extra_fields["turn_scores"] == [-1.0] * (len(expert) - 1) + [0.0]
    assert out.extra_fields["max_global_steps"] == 3
    assert len({r for r, _, _ in server.requests}) == 1 and len(server.requests) == len(expert)
    # an invalid policy runs to the level's 10 turns, or to the response budget
    out = play(tok, ScriptedServer(tok, lambda text, turn: "fly"), record)
    assert out.reward_score == -40.0 and out.extra_fields["reward_extra_info"]["invalid"] == 10
    out = play(tok, ScriptedServer(tok, lambda text, turn: "fly"), record, response_length=150,
               max_turn_tokens=4)
    info = out.extra_fields["reward_extra_info"]
    assert info["truncated"] == 1.0 and 1 < info["turns"] < 10 and len(out.response_ids) <= 150
    assert out.response_mask[-1] == 1 and out.reward_score == -4.0 * info["turns"]
    # the local rollout with verl's response budget cuts the episode at the same place
    roll = mt.rollout_episodes(ScriptedLM(tok, lambda text, turn: "fly"), tok, [record], 1, 4,
                               max_len=4096, max_response=150)
    n = int(roll.response_attention[0].sum())
    assert roll.response_ids[0, :n].tolist() == out.response_ids
    assert roll.response_mask[0, :n].tolist() == out.response_mask
    assert roll.turns[0] == info["turns"] and roll.truncated[0]


def test_agent_config_and_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = va.write_agent_config(tmp_path / "agent_loops.yaml", 12)
    from omegaconf import OmegaConf
    assert OmegaConf.to_container(OmegaConf.load(path)) == [
        {"name": "env_agent", "_target_": "core.backends.verl_agent.EnvAgentLoop", "max_turn_tokens": 12}]
    pq.write_table(pa.Table.from_pylist([{"a": 1}, {"a": 2}]), tmp_path / "t.parquet")
    assert va.tag_parquet(tmp_path / "t.parquet") == 2 == va.tag_parquet(tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "t.parquet").to_pylist() == [{"a": 1, "agent_name": "env_agent"},
                                                                  {"a": 2, "agent_name": "env_agent"}]
    ov = va.agent_overrides(path, 512)
    assert ov == {"actor_rollout_ref.rollout.agent.agent_loop_config_path": str(path.resolve()),
                  "data.max_response_length": 512}


@pytest.fixture
def ray_cluster():
    import ray

    from core.backends.verl import CPU_MODE_LOGICAL_CPUS
    ray.init(num_cpus=1 + CPU_MODE_LOGICAL_CPUS, num_gpus=1, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_verl_main_ppo_on_the_cpu_plays_maze_episodes(ray_cluster, tmp_path):
    """Two GRPO steps of verl's real trainer on maze level 1 through the agent loop; the
    validation dumps hold multi-turn episodes whose scores are the environment's returns."""
    from core import schema
    from core.backends.verl_trial import run, write_data
    from core.config import Config, compose, expand
    agent_yaml = tmp_path / "agent_loops.yaml"
    # built without load()'s plugin check: no reward plugin claims env__ rows yet (the episode's
    # return is the reward; the reward bridge is never called for them)
    cfg = schema.build(Config, compose("verl_smoke", [
        "device=cpu", "model=xs", "~grid.axes.model", f"cache_dir={tmp_path}/cache",
        "data.dataset=environments", "data.domains=[maze]", "data.difficulties=[1]", "data.d_rl=8",
        "data.n_eval=4", "rl.steps=2", "rl.prompts_per_step=4", "rl.group_size=4", "rl.max_new_tokens=4",
        "rl.max_prompt_tokens=64", "eval.every=2", "eval.n_samples=4", "eval.k_max=4",
        *(f"verl.{k}={v}" for k, v in va.agent_overrides(agent_yaml, 512).items())]))
    _, t = expand(cfg)[0]
    va.write_agent_config(agent_yaml, t.rl.max_new_tokens)
    workdir = tmp_path / "trial"
    models.model_source(t.size, Path(t.cache_dir).resolve(), seed=t.data.seed)   # what _fits reads
    for path in write_data(t, workdir, log=lambda *a: None):
        assert va.tag_parquet(path) > 0                   # rows carry agent_name
    steps = {m["step"]: m for m, _ in run(t, workdir, log=lambda *a: None)}

    assert sorted(steps) == [0, 1, 2]
    for s in (0, 2):
        assert {"val/maze/pass_at_1", "val/pass_at_4"} <= set(steps[s])
        assert steps[s]["verl/val-aux/num_turns/mean"] > 3
    for s in (1, 2):
        assert steps[s]["train/reward_mean"] < 0          # the environment's rewards, not the bridge's
        assert steps[s]["verl/num_turns/mean"] > 3
    import pyarrow.parquet as pq
    val = pq.read_table(workdir / "data" / "val.parquet").to_pylist()
    for s in (0, 2):
        rows = [json.loads(line) for line in (workdir / "validation" / f"{s}.jsonl").read_text().splitlines()]
        assert len(rows) == 4 * 4
        m = va.dump_metrics(rows)
        assert m["val/maze/turns"] >= 2
        assert m["val/maze/return"] == pytest.approx(steps[s]["verl/val-aux/env__maze/reward/mean_at_4"])
        for row in rows:
            assert row["turns"] >= 2 and row["score"] == pytest.approx(row["return"])
            record = va.record_of({"raw_prompt": val[row["prompt_index"]]["prompt"],
                                   "extra_info": val[row["prompt_index"]]["extra_info"]})
            env, _ = mt.make_env(record)                  # replay the dumped actions: same return
            rewards = [env.step(a)[1] for a in json.loads(row["actions"])]
            assert sum(rewards) == pytest.approx(row["score"]) and len(rewards) == row["turns"]
