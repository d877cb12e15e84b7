"""Curriculum plugins: each schedule on a toy pool, determinism, state round trips, option
messages, the StepRounds trainer protocol, and the verl sampler against verl's real base class."""
from __future__ import annotations

import math
import random
import uuid
from collections import Counter

import pytest

from core.plugin_check import check_curriculum
from core.plugins import registry
from core.protocols import Outcome
from plugins.curricula.competence import competence
from core.rounds import StepRounds

DOMAINS = ("arith", "sort")


def rec(i: int, dom: str, lvl: int) -> dict:
    return {"data_source": f"synthetic__{dom}", "ability": dom,
            "prompt": [{"role": "user", "content": f"{dom}-{lvl}-{i}"}],
            "reward_model": {"style": "rule", "ground_truth": "1"},
            "extra_info": {"domain": dom, "difficulty": lvl, "index": i}}


def pool(per: int = 5, levels=(1, 2, 3, 4), ungraded: int = 0) -> list[dict]:
    out = [rec(0, d, lv) for lv in levels for d in DOMAINS for _ in range(per)]
    out += [rec(0, "arith", 0) for _ in range(ungraded)]
    for i, r in enumerate(out):
        r["extra_info"]["index"] = i
        r["prompt"][0]["content"] = f"{r['ability']}-{r['extra_info']['difficulty']}-{i}"
    return out


def make(name: str, records, seed: int = 0, **options):
    return registry().get("curricula", name).factory(records, seed=seed, **options)


def outs(records, rate, g: int = 4) -> list[Outcome]:
    """g samples per record; the first round(rate(record) * g) are correct (reward 1)."""
    out = []
    for i, r in enumerate(records):
        k = round(rate(r) * g)
        out += [Outcome(i, float(s < k), s < k) for s in range(g)]
    return out


def lvl(r) -> int:
    return r["extra_info"]["difficulty"]


def key(r) -> str:
    return r["prompt"][0]["content"]


def run(cur, steps, size, rate, start: int = 0) -> list[list[str]]:
    """Steps through StepRounds (every curriculum); the trained prompts of each step."""
    trained = []
    for t in range(start, start + steps):
        rounds = StepRounds(cur, t, size)
        todo, served = rounds.first(), []
        while todo:
            served.append(todo)
            todo = rounds.add(todo, outs(todo, rate))
        trained.append([key(served[r][i]) for r, i in rounds.finish()])
    return trained


OPTIONS = {"mixed": {}, "easy_to_hard": {"steps_per_stage": 2}, "competence": {"steps_to_full": 8},
           "domain_schedule": {"schedule": [[0, {"arith": 1.0}], [6, {"sort": 1.0}]]},
           "online_filter": {}}


# --- every curriculum ------------------------------------------------------------------------------
def test_registered_with_their_options():
    reg = registry()
    assert set(OPTIONS) <= set(reg.names("curricula"))
    assert reg.get("curricula", "easy_to_hard").options == ("steps_per_stage", "advance_at", "window", "replay")
    assert reg.get("curricula", "competence").requires == ("difficulty",)
    assert reg.get("curricula", "domain_schedule").requires == ("domain",)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_protocol_determinism_and_resume(name):
    records, rate = pool(), lambda r: {1: 1.0, 2: 0.5, 3: 0.25, 4: 0.0}[lvl(r)]
    check_curriculum(name, "test", registry().get("curricula", name).factory, OPTIONS[name], records, 4, 4, 0)
    full = run(make(name, records, **OPTIONS[name]), 12, 6, rate)
    assert full == run(make(name, records, **OPTIONS[name]), 12, 6, rate)          # same seed, same outcomes
    assert full != run(make(name, records, seed=1, **OPTIONS[name]), 12, 6, rate)
    first = make(name, records, **OPTIONS[name])
    head = run(first, 5, 6, rate)
    resumed = make(name, records, **OPTIONS[name])
    resumed.load_state_dict(first.state_dict())
    assert head + run(resumed, 7, 6, rate, start=5) == full
    with pytest.raises(ValueError, match="saved state belongs to"):
        make(name, records, seed=3, **OPTIONS[name]).load_state_dict(first.state_dict())


@pytest.mark.parametrize("name,options,message", [
    ("mixed", {"x": 1}, "mixed: unknown option 'x'; allowed: (none)"),
    ("easy_to_hard", {"advance_at": 1.5}, "easy_to_hard: option 'advance_at' must be in (0, 1] or null, got 1.5"),
    ("easy_to_hard", {"steps_per_stage": 0}, "option 'steps_per_stage' must be an int >= 1 or null, got 0"),
    ("easy_to_hard", {"steps_per_stage": None}, "set option 'steps_per_stage' or 'advance_at'"),
    ("easy_to_hard", {"window": 2.0}, "option 'window' must be an int >= 1, got 2.0"),
    ("easy_to_hard", {"replay": 1}, "option 'replay' must be in [0, 1), got 1"),
    ("easy_to_hard", {"stage": 1}, "unknown option 'stage'; allowed: steps_per_stage, advance_at, window, replay"),
    ("competence", {}, "competence: option 'steps_to_full' is required"),
    ("competence", {"steps_to_full": 10, "c0": 0}, "competence: option 'c0' must be in (0, 1], got 0"),
    ("competence", {"steps_to_full": True}, "option 'steps_to_full' must be an int >= 1, got True"),
    ("domain_schedule", {}, "domain_schedule: option 'schedule' is required"),
    ("domain_schedule", {"schedule": [[5, {"arith": 1}], [5, {"sort": 1}]]}, "option 'schedule' must be a list"),
    ("domain_schedule", {"schedule": [[0, {"arith": 0}]]}, "option 'schedule' must be a list"),
    ("domain_schedule", {"schedule": [[0, {"math": 1}]]}, "names domain 'math', which the RL pool does not have"),
    ("domain_schedule", {"schedule": [[0, {"arith": 1}]], "mode": "cubic"},
     "option 'mode' must be 'linear' or 'step'"),
    ("online_filter", {"max_refill_rounds": -1}, "online_filter: option 'max_refill_rounds' must be an int >= 0"),
    ("online_filter", {"refill_factor": 0.5}, "option 'refill_factor' must be a number >= 1, got 0.5"),
    ("online_filter", {"retire_at": 0}, "option 'retire_at' must be in (0, 1] or null, got 0"),
    ("online_filter", {"filter_on": "acc"}, "option 'filter_on' must be 'reward' or 'correct', got 'acc'"),
])
def test_option_messages(name, options, message):
    with pytest.raises(ValueError) as err:
        make(name, pool(), **options)
    assert message in str(err.value)


def test_empty_pool_is_refused():
    for name in OPTIONS:
        with pytest.raises(ValueError, match="the RL pool is empty"):
            make(name, [], **OPTIONS[name])


# --- mixed -----------------------------------------------------------------------------------------
def test_mixed_keeps_its_original_order():
    records = pool()
    old = []
    for pos in range(3 * 7, 4 * 7):               # step 3, size 7, as the original implementation did
        epoch, offset = divmod(pos, len(records))
        order = list(range(len(records)))
        random.Random(f"5/{epoch}").shuffle(order)
        old.append(records[order[offset]])
    cur = make("mixed", records, seed=5)
    assert cur.batch(3, 7) == old and cur.online is False
    cur.load_state_dict({})                           # checkpoints from before the header


# --- easy_to_hard ----------------------------------------------------------------------------------
def test_easy_to_hard_step_budget_and_ungraded_last():
    cur = make("easy_to_hard", pool(ungraded=4), steps_per_stage=2)
    levels = [sorted({lvl(r) for r in cur.batch(t, 4)}) for t in range(12)]
    assert levels == [[1]] * 2 + [[2]] * 2 + [[3]] * 2 + [[4]] * 2 + [[0]] * 4
    assert cur.online is False and cur.metrics() == {"stage": 4.0, "level": 0.0}


def test_easy_to_hard_advances_when_pass_rate_reaches_threshold_and_not_before():
    cur = make("easy_to_hard", pool(), steps_per_stage=None, advance_at=0.75, window=2)
    assert cur.online is True
    # pooled windows of 2 steps: .5, .625, .625 stay below .75; (.5 + 1.0) / 2 reaches it
    for t, rate in enumerate([0.5, 0.5, 0.75, 0.5, 1.0]):
        batch = cur.batch(t, 4)
        assert {lvl(r) for r in batch} == {1}, t
        cur.update(t, batch, outs(batch, lambda r: rate))
        assert cur.stage == (1 if t == 4 else 0), t
    assert {lvl(r) for r in cur.batch(5, 4)} == {2}


def test_easy_to_hard_window_must_be_full():
    cur = make("easy_to_hard", pool(), steps_per_stage=None, advance_at=0.5, window=3)
    for t in range(2):
        batch = cur.batch(t, 4)
        cur.update(t, batch, outs(batch, lambda r: 1.0))
        assert cur.stage == 0
    batch = cur.batch(2, 4)
    cur.update(2, batch, outs(batch, lambda r: 1.0))
    assert cur.stage == 1


def test_easy_to_hard_replay_mixes_earlier_stages_and_is_not_counted():
    cur = make("easy_to_hard", pool(), steps_per_stage=None, advance_at=0.9, window=1, replay=0.25)
    batch = cur.batch(0, 8)
    assert [lvl(r) for r in batch] == [1] * 8            # no earlier stage yet
    cur.update(0, batch, outs(batch, lambda r: 1.0))
    batch = cur.batch(1, 8)
    assert [lvl(r) for r in batch] == [2] * 6 + [1] * 2  # floor(0.25 * 8 + 0.5) = 2 replayed
    cur.update(1, batch, outs(batch, lambda r: 1.0 if lvl(r) == 1 else 0.0))
    assert cur.stage == 1                                # replayed successes do not count


# --- competence ------------------------------------------------------------------------------------
def test_competence_formula():
    assert competence(0, 100, 0.01) == pytest.approx(0.01)
    assert competence(25, 100, 0.1) == pytest.approx(math.sqrt(25 * (1 - 0.01) / 100 + 0.01))
    assert competence(100, 100, 0.01) == 1.0 and competence(500, 100, 0.01) == 1.0


def test_competence_serves_only_the_easiest_fraction():
    records = pool(per=5, ungraded=10)                   # 10 per level, 10 ungraded: 50
    cur = make("competence", records, seed=3, steps_to_full=16, c0=0.2)
    rank = {key(records[p]): i for i, p in enumerate(cur.order)}
    assert [lvl(records[p]) for p in cur.order] == [1] * 10 + [2] * 10 + [3] * 10 + [4] * 10 + [0] * 10
    for t in range(20):
        m = max(1, math.ceil(competence(t, 16, 0.2) * 50 - 1e-9))
        batch = cur.batch(t, 8)
        assert len(batch) == 8 and all(rank[key(r)] < m for r in batch), t
        assert len({key(r) for r in batch}) == min(8, m)
    assert cur.size_at(0) == 10 and cur.size_at(16) == 50
    seen = Counter(lvl(r) for t in range(16, 40) for r in cur.batch(t, 8))
    assert set(seen) == {0, 1, 2, 3, 4}


def test_competence_ties_follow_a_seeded_order():
    records = pool()
    a = make("competence", records, seed=0, steps_to_full=8)
    b = make("competence", records, seed=1, steps_to_full=8)
    assert a.order != b.order and a.order == make("competence", records, seed=0, steps_to_full=8).order
    assert a.batch(3, 5) == make("competence", records, seed=0, steps_to_full=8).batch(3, 5)   # pure in step


# --- domain_schedule -------------------------------------------------------------------------------
def test_domain_weights_at_and_between_breakpoints():
    sched = [[4, {"arith": 1.0}], [14, {"arith": 1.0, "sort": 3.0}]]
    lin = make("domain_schedule", pool(), schedule=sched)
    assert lin.weights(0) == {"arith": 1.0, "sort": 0.0} == lin.weights(4)
    assert lin.weights(9) == pytest.approx({"arith": 0.4, "sort": 0.6})   # (1, 1.5) normalised
    assert lin.weights(14) == pytest.approx({"arith": 0.25, "sort": 0.75}) == lin.weights(100)
    step = make("domain_schedule", pool(), schedule=sched, mode="step")
    assert step.weights(13) == {"arith": 1.0, "sort": 0.0} and step.weights(14) == pytest.approx(lin.weights(14))


def test_domain_draws_follow_the_weights_and_cycle_within_domains():
    records = pool()
    cur = make("domain_schedule", records, seed=2, schedule=[[0, {"arith": 0.25, "sort": 0.75}]])
    served = [r for t in range(150) for r in cur.batch(t, 16)]
    share = sum(r["ability"] == "arith" for r in served) / len(served)
    assert abs(share - 0.25) < 0.03                      # 2400 draws: sd ~0.009
    arith = [key(r) for r in served if r["ability"] == "arith"][:20]
    assert len(set(arith)) == 20                         # a domain's 20 records once before repeats
    only = make("domain_schedule", records, schedule=[[0, {"sort": 1}]])
    assert {r["ability"] for r in only.batch(0, 30)} == {"sort"}


# --- online_filter ---------------------------------------------------------------------------------
def test_filter_drops_all_equal_groups():
    cur = make("online_filter", pool())
    records = cur.batch(0, 5)
    o = [Outcome(0, 1.0, True), Outcome(0, 1.0, True), Outcome(1, 1.0, True), Outcome(1, 0.0, False),
         Outcome(2, 0.0, False), Outcome(2, 0.0, False), Outcome(3, 0.5, False),
         Outcome(4, 0.2, False), Outcome(4, 0.7, False)]
    assert cur.filter(0, records, o) == [1, 3, 4]        # 3: one sample is never all-equal
    assert make("online_filter", pool(), filter_on="correct").filter(0, records, o) == [1, 3]


def test_refill_up_to_the_cap_with_counts_and_top_up():
    records = pool()                                     # level 1 solved, 4 unsolved: 1/2 informative
    rate = lambda r: {1: 1.0, 2: 0.5, 3: 0.25, 4: 0.0}[lvl(r)]   # noqa: E731
    cur = make("online_filter", records, seed=4, max_refill_rounds=2, refill_factor=1.5, retire_at=None)
    rounds = StepRounds(cur, 0, 8)
    todo, sizes, kept = rounds.first(), [], 0
    while todo:
        sizes.append(len(todo))
        missing = 8 - kept
        assert len(todo) == (8 if not kept and len(sizes) == 1 else math.ceil(1.5 * missing))
        o = outs(todo, rate)
        kept += len(cur.filter(0, todo, o))
        todo = rounds.add(todo, o)
    chosen = rounds.finish()
    assert len(sizes) <= 3 and len(chosen) == 8
    s = rounds.stats
    assert s["rounds"] == len(sizes) and s["served_prompts"] == sum(sizes)
    assert s["filtered_groups"] == sum(sizes) - kept
    assert s["extra_prompts"] == sum(sizes) - 8 and s["topped_up"] == max(0, 8 - kept)
    assert s["surplus_groups"] == max(0, kept - 8)
    capped = StepRounds(make("online_filter", records, max_refill_rounds=0), 0, 8)
    batch = capped.first()
    assert capped.add(batch, outs(batch, lambda r: 1.0)) == []   # cap 0: no refill, all topped up
    assert len(capped.finish()) == 8 and capped.stats["topped_up"] == 8 and capped.stats["rounds"] == 1


def test_chosen_groups_are_the_informative_ones_in_serving_order():
    records = pool()
    cur = make("online_filter", records, seed=1, max_refill_rounds=5, retire_at=None)
    rounds = StepRounds(cur, 0, 6)
    todo, served = rounds.first(), []
    while todo:
        served.append(todo)
        todo = rounds.add(todo, outs(todo, lambda r: 0.5 if lvl(r) in (2, 3) else float(lvl(r) == 1)))
    chosen = rounds.finish()
    flat = [(r, i) for r, batch in enumerate(served) for i, x in enumerate(batch) if lvl(x) in (2, 3)]
    assert chosen == flat[:6]


def test_retirement_at_the_threshold():
    records = pool()
    cur = make("online_filter", records, seed=0, retire_at=0.75)
    batch = cur.batch(0, 40)
    cur.update(0, batch, outs(batch, lambda r: {1: 1.0, 2: 0.75, 3: 0.5, 4: 0.0}[lvl(r)]))
    assert {lvl(records[p]) for p in cur.retired} == {1, 2} and len(cur.retired) == 20
    assert all(lvl(r) in (3, 4) for t in range(1, 6) for r in cur.batch(t, 8))
    assert cur.metrics() == {"retired": 20.0, "active": 20.0}
    never = make("online_filter", records, retire_at=None)
    never.update(0, batch, outs(batch, lambda r: 1.0))
    assert not never.retired
    cur.update(9, batch, outs(batch, lambda r: 1.0))
    with pytest.raises(RuntimeError, match="all 40 prompts are retired"):
        cur.batch(10, 4)


def test_plain_curricula_take_one_round_and_hear_every_outcome():
    cur = make("easy_to_hard", pool(), steps_per_stage=None, advance_at=0.5, window=1)
    rounds = StepRounds(cur, 0, 4)
    batch = rounds.first()
    assert rounds.add(batch, outs(batch, lambda r: 1.0)) == []
    assert rounds.finish() == [(0, i) for i in range(4)] and cur.stage == 1
    assert rounds.stats == {"rounds": 1, "served_prompts": 4, "filtered_groups": 0, "topped_up": 0,
                            "surplus_groups": 0, "extra_prompts": 0}


# --- the verl sampler, against verl's real ReplayBuffer, dataset and dataloader ----------------------
class FakeTQ:
    """TransferQueue's kv calls as verl's replay buffer uses them, in memory."""

    def __init__(self):
        self.tags, self.values = {"train": {}, "val": {}}, {"train": {}, "val": {}}

    def kv_list(self, partition_id=None):
        parts = [partition_id] if partition_id else list(self.tags)
        return {p: {k: dict(t) for k, t in self.tags[p].items()} for p in parts}

    def kv_put(self, key, partition_id, tag, fields=None):
        self.tags[partition_id].setdefault(key, {}).update(tag)
        if fields is not None:
            self.values[partition_id][key] = fields

    def kv_batch_get(self, keys, partition_id, select_fields):
        return {f: [self.values[partition_id][k][f] for k in keys] for f in select_fields}

    def kv_clear(self, keys, partition_id):
        for k in keys:
            self.tags[partition_id].pop(k, None)
            self.values[partition_id].pop(k, None)


def session_reward(level: int, session: int) -> float:
    return {1: 1.0, 2: float(session % 2), 3: float(session == 0), 4: 0.0}[level]


class FakeTrainer:
    """verl's PPOTrainer around the replay buffer: dataloader fetches, dispatch, rewards in TQ."""

    def __init__(self, tq, tmp_path, state=None, G=4):
        import torch  # noqa: F401  (verl's dataset needs it)
        from omegaconf import OmegaConf
        from torchdata.stateful_dataloader import StatefulDataLoader
        from torch.utils.data import SequentialSampler
        from verl.utils.dataset.rl_dataset import collate_fn

        from core.backends import verl_sampler as vs
        self.tq, self.G, self.uids = tq, G, 0
        self.sampler = vs.CurriculumSampler(
            "sync", OmegaConf.create({}), None, "drop",
            OmegaConf.create({"curriculum": "online_filter", "seed": 7,
                              "options": {"max_refill_rounds": 2, "retire_at": 0.9}}),
            poll_interval=0.0, refill_fn=self.add)
        train, val = str(tmp_path / "train.parquet"), str(tmp_path / "val.parquet")
        cfg = OmegaConf.create({"train_files": [train], "val_files": val,
                                "train_batch_size": 4, "gen_batch_size": 1, "dataloader_num_workers": 0,
                                "filter_overlong_prompts": False, "cache_dir": str(tmp_path / "cache")})
        self.dataset = vs.CurriculumDataset(OmegaConf.create([train]), None, cfg)   # as verl passes them
        self.val = vs.CurriculumDataset(val, None, cfg)
        self.loader = StatefulDataLoader(self.dataset, batch_size=1, num_workers=0, drop_last=True,
                                         collate_fn=collate_fn, sampler=SequentialSampler(self.dataset))
        if state is not None:
            self.loader.load_state_dict(state)
        self.it = None

    def fetch(self):
        try:
            self.it = self.it or iter(self.loader)
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)

    def add(self, n):                   # PPOTrainer._add_prompts_to_generate, rollouts finished at once
        import torch
        for _ in range(n):
            row = self.fetch()
            index, level = int(row["index"][0]), int(row["extra_info"][0]["difficulty"])
            uid, self.uids = str(uuid.uuid4()), self.uids + 1               # as verl names them
            self.tq.kv_put(uid, "train", {"is_prompt": True, "status": "pending", "global_steps": 0})
            for s in range(self.G):
                r = session_reward(level, s)
                info = {"acc": r, "score": r, "prompt_index": index}     # core/verl_reward.py's keys
                self.tq.kv_put(f"{uid}_{s}_0", "train", {"status": "success", "prompt_len": 5, "response_len": 3},
                               {"rm_scores": torch.tensor([0.0, 0.0, r]), "extra_fields": {"reward_extra_info": info}})
            self.tq.kv_put(uid, "train", {"status": "finished"})
        return n

    def step(self, g):
        self.add(4)                                                # prepare_step
        batch, metrics = self.sampler.sample(global_steps=g, partition_id="train", batch_size=4)
        values = self.tq.values["train"]
        index = {k.split("_")[0]: values[k]["extra_fields"]["reward_extra_info"]["prompt_index"] for k in batch.keys}
        self.tq.kv_clear(list(batch.keys), "train")                # fit(): cleanup after the step
        assert not self.tq.tags["train"], "groups left behind in TransferQueue"
        assert len(batch.keys) == 4 * self.G
        return sorted(index.values()), metrics


def test_verl_sampler_serves_the_curriculum_and_resumes(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from verl.trainer.ppo.v1 import replay_buffer as rb

    records = pool(per=2)                                           # 16 prompts, 4 per level
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "train.parquet")
    pq.write_table(pa.Table.from_pylist(records[:2]), tmp_path / "val.parquet")
    tq = FakeTQ()
    monkeypatch.setattr(rb, "tq", tq)

    # what the plugin alone serves, given the same outcomes
    cur = make("online_filter", records, seed=7, max_refill_rounds=2, retire_at=0.9)
    expect, expect_stats, expect_retired = [], [], []
    for t in range(5):
        rounds = StepRounds(cur, t, 4)
        todo, served = rounds.first(), []
        while todo:
            served.append(todo)
            todo = rounds.add(todo, [Outcome(i, session_reward(lvl(r), s), session_reward(lvl(r), s) >= 0.5)
                                     for i, r in enumerate(todo) for s in range(4)])
        expect.append(sorted(served[r][i]["extra_info"]["index"] for r, i in rounds.finish()))
        expect_stats.append(rounds.stats)
        expect_retired.append(len(cur.retired))

    trainer = FakeTrainer(tq, tmp_path)
    assert trainer.dataset.is_train and not trainer.val.is_train
    got = []
    for g in (1, 2, 3):
        order, metrics = trainer.step(g)
        got.append(order)
        s = expect_stats[g - 1]
        assert metrics["curriculum/filtered_groups"] == s["filtered_groups"]
        assert metrics["curriculum/extra_prompts"] == s["extra_prompts"]
        assert metrics["curriculum/extra_response_tokens"] == s["extra_prompts"] * 4 * 3
        assert metrics["curriculum/retired"] == expect_retired[g - 1]
    assert got == expect[:3]
    assert all(expect_stats[i]["filtered_groups"] > 0 for i in range(3)) and expect_retired[0] > 0

    state = trainer.loader.state_dict()                              # verl's data.pt
    resumed = FakeTrainer(tq, tmp_path, state=state)
    assert [resumed.step(g)[0] for g in (4, 5)] == expect[3:5]
    with pytest.raises(RuntimeError, match="was not served by CurriculumDataset"):
        resumed.sampler.sample(global_steps=9, partition_id="train", batch_size=4)

    # validation goes through verl's own ReplayBuffer.sample untouched
    tq.kv_put("v1", "val", {"is_prompt": True, "status": "finished", "global_steps": 5})
    tq.kv_put("v1_0_0", "val", {"status": "success"}, {})
    batch, _ = resumed.sampler.sample(global_steps=5, partition_id="val", batch_size=1)
    assert list(batch.keys) == ["v1_0_0"]
