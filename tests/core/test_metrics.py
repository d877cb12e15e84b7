from math import comb

import numpy as np
import pytest

from core.metrics import ks_up_to, paired_gain_ci, pass_at_k, pass_at_k_metrics


def direct(n, c, k):
    return 1.0 - comb(n - c, k) / comb(n, k)


def test_matches_direct_combinatorics_on_random_inputs():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 130, size=400)
    c = np.array([rng.integers(0, x + 1) for x in n])
    k = np.array([rng.integers(1, x + 1) for x in n])
    got = pass_at_k(n, c, k)
    want = np.array([direct(*t) for t in zip(n.tolist(), c.tolist(), k.tolist())])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n,c,k,want", [
    (16, 0, 1, 0.0), (16, 0, 16, 0.0),          # c = 0: never
    (16, 16, 1, 1.0), (16, 16, 16, 1.0),        # c = n: always
    (10, 8, 3, 1.0),                            # n - c < k: exactly 1
    (4, 1, 4, 1.0), (4, 1, 1, 0.25), (128, 1, 128, 1.0),
])
def test_edge_cases(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want)
    assert pass_at_k(n, c, k) == pytest.approx(direct(n, c, k))


def test_vectorised_broadcast_and_monotone_in_k():
    ks = np.arange(1, 129)
    vals = pass_at_k(128, 5, ks)
    assert vals.shape == (128,) and np.all(np.diff(vals) >= 0)
    assert pass_at_k(np.array([[8, 8]]), np.array([[1], [2]]), 2).shape == (2, 2)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 8)


def test_metric_names_and_creativity_index():
    correct = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    m = pass_at_k_metrics(correct, ["arith", "arith", "sort"], k_max=4)
    assert ks_up_to(16) == [1, 2, 4, 8, 16] and ks_up_to(12) == [1, 2, 4, 8, 12]
    assert m["val/pass_at_1"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert m["val/arith/pass_at_4"] == pytest.approx(0.5)
    assert m["val/creativity_index"] == m["val/pass_at_4"]
    assert all("@" not in k for k in m)


def test_paired_gain_interval_brackets_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    before = rng.random((2, 50))
    after = before + 0.1 + 0.01 * rng.standard_normal((2, 50))
    g, lo, hi = paired_gain_ci(before, after, seed=3)
    assert lo < g < hi and lo > 0.05
    assert paired_gain_ci(before, after, seed=3) == (g, lo, hi)
