"""Domains with distinct skills for transfer studies: the synthetic tasks' new domains (mul,
max, rot; the old ones' records unchanged) and the reasoning-gym domains
(plugins/datasets/reasoning_gym.py) with their verifier: seeded, disjoint splits, compact
prompts that fit the tiny ladder's context, levels that get harder, and ground truths the
library's own score_answer accepts."""
import hashlib
import json
import re

import pytest

from plugins.datasets import synthetic
from plugins.datasets.reasoning_gym import DOMAINS, LEVELS, TASKS, entries, load
from plugins.rewards.reasoning_gym import ReasoningGymVerifier
from plugins.rewards.synthetic import SyntheticVerifier


@pytest.fixture(autouse=True)
def rg(request):
    if "synthetic" in request.node.name:
        return None
    return pytest.importorskip("reasoning_gym", reason="reasoning-gym==0.1.25 is not installed")

CONTEXT = 64          # the tiny ladder's max_position_embeddings
CHATML = 19           # <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n


def test_records_are_seeded_guru_shaped_and_cover_every_cell():
    recs = load("train", 96, seed=3)
    assert recs == load("train", 96, seed=3) and recs != load("train", 96, seed=4)
    r = recs[0]
    assert set(r) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert r["data_source"] == "rg__" + r["ability"] and r["extra_info"]["domain"] == r["ability"]
    assert r["extra_info"]["sft_response"] == "#" + r["reward_model"]["ground_truth"]
    assert {(x["ability"], x["extra_info"]["difficulty"]) for x in recs} == {
        (d, lv) for d in DOMAINS for lv in LEVELS}
    assert len(DOMAINS) >= 5


def test_train_and_eval_never_share_a_prompt():
    for domain in DOMAINS:
        train = {r["prompt"][0]["content"] for r in load("train", 400, (domain,), seed=0)}
        evals = {r["prompt"][0]["content"] for r in load("eval", 80, (domain,), seed=0)}
        assert train and evals and not train & evals, domain


def test_prompt_and_answer_fit_the_tiny_context_and_levels_get_harder():
    for domain in DOMAINS:
        lens = []
        for lv in LEVELS:
            recs = load("train", 60, (domain,), (lv,), seed=0)
            worst = max(len(r["prompt"][0]["content"]) + len(r["extra_info"]["sft_response"]) for r in recs)
            assert CHATML + worst + 1 <= CONTEXT, (domain, lv, worst)
            assert all((r["prompt"][0]["content"] + r["reward_model"]["ground_truth"]).isascii() for r in recs)
            lens.append(sum(len(r["prompt"][0]["content"]) + len(r["reward_model"]["ground_truth"])
                            for r in recs))
        assert lens[0] < lens[-1], domain


def test_the_librarys_verifier_accepts_every_ground_truth(rg):
    for domain in DOMAINS:
        ds_of = {}
        for lv in LEVELS:
            stream = entries(domain, lv, "train", seed=0)
            for _ in range(25):
                entry, prompt, answer = next(stream)
                ds = ds_of.setdefault(lv, rg.create_dataset(domain, size=1, seed=0, **TASKS[domain].levels[lv],
                                                            **TASKS[domain].fixed))
                assert ds.score_answer(answer, entry) == 1.0, (domain, prompt, answer)


def test_verifier_is_exact_and_scores_format_apart():
    v = ReasoningGymVerifier()
    assert v("rg__products", "#56", "56").acc == 1.0
    wrong = v("rg__products", "#57", "56")
    assert wrong.acc == 0.0 and wrong.format == 1.0
    assert v("rg__products", "56", "56").format == 0.0                  # no marker
    assert v("rg__chain_sum", "#-4", "-4").acc == 1.0
    assert v("rg__word_sorting", "#Bat,cat", "Bat,cat").acc == 1.0
    # the library gives partial credit here (right words, wrong order); pass@k must not
    assert v("rg__word_sorting", "#cat,Bat", "Bat,cat").acc == 0.0
    assert v("rg__fraction_simplification", "#6/8", "3/4").acc == 0.0
    assert v("rg__fraction_simplification", "#3/4 ", "3/4").acc == 1.0
    assert v("rg__base_conversion", "#1F", "11").format == 0.0    # lower-case digits only
    shaped = ReasoningGymVerifier(format_weight=0.1)("rg__lcm", "#12", "24")
    assert shaped.score == pytest.approx(0.1) and shaped.acc == 0.0
    with pytest.raises(ValueError, match="rg__"):
        v("synthetic__arith", "#1", "1")


def test_the_platform_selects_it_with_its_reward():
    from core import data
    from core.config import load as load_cfg
    cfg = load_cfg("smoke", ["data.dataset=reasoning_gym", "reward.name=reasoning_gym",
                            f"data.domains=[{','.join(DOMAINS)}]", "data.difficulties=[1,2]",
                            "data.d_rl=48", "data.n_eval=24", "~grid.axes.model"])
    train, evals = data.select(cfg, "train"), data.select(cfg, "eval")
    assert len(train) == 48 and len(evals) == 24
    v = ReasoningGymVerifier()
    assert all(v(r["data_source"], r["extra_info"]["sft_response"], r["reward_model"]["ground_truth"]).acc
               for r in train)


# --- the synthetic tasks' new domains --------------------------------------------------------
def test_synthetic_old_domains_generate_the_same_records():
    h = hashlib.sha256()
    for split in ("train", "eval"):
        h.update(json.dumps(synthetic.generate(300, split, ("arith", "sort", "rev"), (1, 2, 3, 4), 0)).encode())
    assert h.hexdigest()[:16] == "fbf272a5ba8f36a0"     # as before mul / max / rot existed


def _solve(domain: str, prompt: str) -> str:
    body = prompt[:-1]
    if domain == "mul":
        a, b = map(int, body.split("*"))
        return str(a * b)
    if domain == "max":
        return str(max(map(int, body[2:].split(","))))
    key, letters = body.split(":")
    abc = "abcdefghij"
    return "".join(abc[(abc.index(c) + int(key[1:])) % 10] for c in letters)


def test_synthetic_new_domains_are_right_seeded_disjoint_and_graded():
    v = SyntheticVerifier()
    for domain in ("mul", "max", "rot"):
        train = synthetic.generate(400, "train", (domain,), seed=0)
        evals = synthetic.generate(100, "eval", (domain,), seed=0)
        assert train == synthetic.generate(400, "train", (domain,), seed=0)
        assert not {r["prompt"][0]["content"] for r in train} & {r["prompt"][0]["content"] for r in evals}
        for r in train + evals:
            p, gt = r["prompt"][0]["content"], r["reward_model"]["ground_truth"]
            assert _solve(domain, p) == gt, (domain, p, gt)
            assert v(r["data_source"], r["extra_info"]["sft_response"], gt).acc == 1.0
            assert CHATML + len(p) + len(gt) + 2 <= CONTEXT
        by_level = [[len(r["prompt"][0]["content"]) for r in train if r["extra_info"]["difficulty"] == lv]
                    for lv in LEVELS]
        assert sum(by_level[0]) / len(by_level[0]) < sum(by_level[-1]) / len(by_level[-1]), domain
    assert v("synthetic__mul", "#56", "56").acc == 1.0 and v("synthetic__rot", "#d3", "dec").format == 0.0
