"""Hard-negative preference pairs (``reward.rm.negatives=hard``): chosen and rejected differ in
correctness, not in format."""
import pytest

from plugins.datasets.preference import PreferenceDataError, policy_pairs


def _records(n):
    return [{"prompt": [{"role": "user", "content": f"{i}+1="}], "data_source": "synthetic__arith",
             "reward_model": {"ground_truth": str(i + 1)}, "extra_info": {}} for i in range(n)]


def _sample(batch, g):      # per prompt: right, malformed wrong, well-formed wrong, repeated
    out = []
    for r in batch:
        truth = r["reward_model"]["ground_truth"]
        out += [f"#{truth}", "#?", f"#{int(truth) + 7}", "junk"][:g] * (g // 4)
    return out


def _correct(batch, texts, g):
    return [(t == f"#{batch[i // g]['reward_model']['ground_truth']}", t[1:].isdigit())
            for i, t in enumerate(texts)]


def test_hard_negatives_are_well_formed_and_wrong():
    pairs = policy_pairs(_records(20), _sample, _correct, 10, group_size=4, negatives="hard")
    assert len(pairs) == 10
    for p in pairs:
        assert p["rejected"][1:].isdigit() and p["rejected"] != p["chosen"]
    easy = policy_pairs(_records(40), _sample, _correct, 30, group_size=4, negatives="any")
    assert {p["rejected"] for p in easy} & {"#?", "junk"}     # any wrong sample, malformed too


def test_hard_negatives_need_well_formed_labels_and_say_why():
    with pytest.raises(PreferenceDataError, match="well_formed"):
        policy_pairs(_records(4), _sample, lambda b, t, g: [x.startswith("#") for x in t], 2,
                     group_size=4, negatives="hard")
    only_malformed = lambda b, t, g: [(i % 4 == 0, False) for i in range(len(t))]   # noqa: E731
    with pytest.raises(PreferenceDataError, match="no well-formed wrong sample"):
        policy_pairs(_records(4), _sample, only_malformed, 2, group_size=4, negatives="hard")
    with pytest.raises(PreferenceDataError, match="allowed any, hard"):
        policy_pairs(_records(4), _sample, _correct, 2, group_size=4, negatives="soft")


def test_gold_scores_and_rm_key():
    from core.config import load
    from core.plugins import registry
    from core.rm import gold_scores, rm_key
    gold = registry().get("rewards", "synthetic").factory(format_weight=0.0)
    recs = [{"prompt": [{"role": "user", "content": "4+5="}], "data_source": "synthetic__arith",
             "reward_model": {"ground_truth": "9"}, "extra_info": {"domain": "arith"}}]
    s = gold_scores(gold, recs, ["#9", "#8", "nine"], 3)
    assert [(x.acc, x.format) for x in s] == [(1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
    any_, hard = load("rm_scaling", ["reward.rm.negatives=any"]), load("rm_scaling", ["reward.rm.negatives=hard"])
    assert rm_key(any_) != rm_key(hard)          # a hard-negative RM is trained on its own


def test_onpolicy_pair_acc_reads_the_steps_own_samples():
    import math

    from core.rm import onpolicy_pair_acc
    proxy = [0.9, 0.1, 0.5, 0.5, 1.0, 2.0, 3.0, 4.0]
    right = [1, 0, 1, 0, 1, 1, 1, 1]          # the second prompt: all right, no pair
    assert onpolicy_pair_acc(proxy, right, 4) == 3.5 / 4     # the tie counts half
    assert math.isnan(onpolicy_pair_acc([1.0, 2.0], [1, 1], 2))


def test_rm_report_shows_onpolicy_accuracy(tmp_path):
    from core.report import build
    from tests.core.test_report import make_run, parent
    runs = [make_run({"reward.rm.size": "s"}, rm=True, report=("rm",))]
    runs[0]["metrics"]["rm/onpolicy_pair_acc"] = {s: 0.8 if s <= 5 else 0.6 for s in range(1, 41)}
    report = build(parent({"reward.rm.size": ["s"]}), runs, None, log=lambda _: None)
    assert "0.800 -> 0.600" in report.tables["rm"]
