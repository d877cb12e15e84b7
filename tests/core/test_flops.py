import pytest

from core.config import load
from core.flops import FlopLedger, FlopModel


def _qwen2(size):
    from core.models import qwen2_config
    return qwen2_config(size, vocab_size=98)


@pytest.mark.parametrize("name", ["xxxs", "xxs", "xs", "s", "m", "l"])
def test_update_term_agrees_with_verl(name):
    from verl.utils.flops_counter import _estimate_qwen2_flops
    cfg = load("smoke", [])
    config = _qwen2(cfg.ladder.sizes[name])
    seqlens = [17, 23, 9, 31] * 8
    ours = FlopModel.from_config(config).train(seqlens)
    verl = _estimate_qwen2_flops(config, sum(seqlens), seqlens, delta_time=1.0) * 1e12
    assert ours == pytest.approx(verl, rel=0.01)


def test_forward_is_a_third_of_training_and_ledger_sums_phases():
    cfg = load("smoke", [])
    fm = FlopModel.from_config(_qwen2(cfg.ladder.sizes["s"]))
    assert fm.forward([10, 20]) * 3 == pytest.approx(fm.train([10, 20]))
    # 2N per token for the dense part
    assert fm.forward([1]) == pytest.approx(2 * fm.dense_n + 2 * fm.attn_per_seq2)
    ledger = FlopLedger()
    ledger.add("rollout", 10), ledger.add("update", 30), ledger.add("eval", 5)
    m = ledger.metrics()
    assert m["compute/flops_total"] == 40 and m["compute/flops_eval"] == 5
    with pytest.raises(KeyError, match="allowed"):
        ledger.add("warmup", 1)
    assert FlopLedger.from_state(ledger.state()).metrics() == m
