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


def test_pad_sums_have_a_fixed_width_and_the_arith_answer():
    from plugins.datasets.synthetic import load
    for level, width in ((1, 1), (2, 2), (3, 2), (4, 3)):
        for r in generate(40, "train", ("pad",), (level,), seed=1):
            a, b = r["prompt"][0]["content"].rstrip("=").split("+")
            answer = r["reward_model"]["ground_truth"]
            assert len(a) == len(b) == width and len(answer) == width + 1
            assert int(a) + int(b) == int(answer)
            assert SyntheticVerifier()("synthetic__pad", "#" + answer, answer).acc == 1.0
    assert load("eval", 20, ("pad",), (2,)) == generate(20, "eval", ("pad",), (2,))


def test_sft_noise_slips_a_fixed_share_of_worked_answers_only():
    from plugins.datasets.synthetic import load
    clean = load("train", 4000, DOMAINS, (1, 2, 3, 4), seed=5)
    noisy = load("train", 4000, DOMAINS, (1, 2, 3, 4), seed=5, sft_noise=0.3)
    assert noisy == load("train", 4000, DOMAINS, (1, 2, 3, 4), seed=5, sft_noise=0.3)
    slipped = 0
    v = SyntheticVerifier()
    for c, n in zip(clean, noisy):
        assert c["prompt"] == n["prompt"] and c["reward_model"] == n["reward_model"]
        right = c["reward_model"]["ground_truth"]
        score = v(n["data_source"], n["extra_info"]["sft_response"], right)
        assert score.format == 1.0                            # a slip stays well formed
        if n["extra_info"].get("slip"):
            slipped += 1
            shown = n["extra_info"]["sft_response"][1:]
            assert score.acc == 0.0 and len(shown) in (len(right), len(right) + 1)
            assert len(shown) != len(right) or sum(x != y for x, y in zip(shown, right)) == 1
        else:
            assert score.acc == 1.0
    assert 0.27 < slipped / len(noisy) < 0.33
    # the same prompt slips the same way whatever the selection it is drawn in
    def key(r):
        return r["ability"], r["prompt"][0]["content"]
    other = {key(r): r for r in load("train", 500, DOMAINS, (1, 2, 3, 4), seed=9, sft_noise=0.3)}
    same = [r for r in noisy if key(r) in other]
    assert same and all(other[key(r)]["extra_info"] == {
        **r["extra_info"], "index": other[key(r)]["extra_info"]["index"]} for r in same)


def test_sft_noise_is_a_checked_config_key():
    import pytest

    from core.config import load as load_cfg
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="data.sft_noise"):
        load_cfg("demo", ["data.sft_noise=1.5"])
    with pytest.raises(ConfigError, match="data.sft_noise"):
        load_cfg("guru", ["data.sft_noise=0.2", "data.path=/nonexistent"])
