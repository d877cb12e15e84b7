from plugins.datasets.synthetic import DOMAINS, generate, split_of
from plugins.rewards.synthetic import SyntheticVerifier


def test_records_have_guru_fields_and_are_seeded():
    recs = generate(60, "train", seed=3)
    assert recs == generate(60, "train", seed=3)
    assert recs != generate(60, "train", seed=4)
    r = recs[0]
    assert set(r) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert r["data_source"] == "synthetic__" + r["ability"]
    assert r["prompt"][0]["role"] == "user" and r["reward_model"]["style"] == "rule"
    assert {x["ability"] for x in recs} == set(DOMAINS)
    assert {x["extra_info"]["difficulty"] for x in recs} == {1, 2, 3, 4}


def test_train_and_eval_are_disjoint():
    train = {r["prompt"][0]["content"] for r in generate(3000, "train", seed=0)}
    evals = {r["prompt"][0]["content"] for r in generate(500, "eval", seed=0)}
    assert train and evals and not train & evals
    assert all(split_of(p) == "eval" for p in evals)


def test_difficulty_grows_with_level():
    for domain in DOMAINS:
        lens = [len(generate(8, "train", (domain,), (lv,), seed=0)[0]["reward_model"]["ground_truth"])
                for lv in (1, 4)]
        assert lens[0] < lens[1], domain


def test_verifier_scores_format_and_correctness_separately():
    v = SyntheticVerifier()
    assert v("synthetic__arith", "#52", "52").acc == 1.0
    wrong = v("synthetic__arith", "#53", "52")
    assert wrong.acc == 0.0 and wrong.format == 1.0
    malformed = v("synthetic__arith", "52", "52")          # no final-answer marker
    assert malformed.acc == 0.0 and malformed.format == 0.0 and malformed.pred is None
    assert v("synthetic__rev", "#dc1a", "dcba").format == 0.0   # outside the alphabet
    assert v("synthetic__sort", "x#9#0123", "0123").acc == 1.0  # the last marker counts
    shaped = SyntheticVerifier(format_weight=0.1)("synthetic__sort", "#0124", "0123")
    assert shaped.score == 0.1 and shaped.acc == 0.0
