import numpy as np
import pytest

from core.fit import (LAWS, Draws, Interval, Quantity, TooFewPoints, across_sizes, bootstrap,
                      bootstrap_draws, compute_to_fraction, draw_ranges, estimate, fit, get_law,
                      holdout, holdout_error, steps_to_fraction)
from core.fit.diagnostics import POINTS_PER_PARAM, check, count_rule
from core.fit.fit import FitResult, Problem, huber_cost


def _noisy(law, x, params, sd, seed=0):
    rng = np.random.default_rng(seed)
    return get_law(law)(x, **params) + sd * rng.standard_normal(len(x))


def test_unknown_law_lists_valid_ones():
    with pytest.raises(KeyError) as err:
        get_law("chinchilla")
    for name in ("sigmoid", "power", "gao_bon", "gao_rl", "saturating_exp", "k_of_n", "power_n"):
        assert name in str(err.value)


PLANTED = [
    ("sigmoid", np.logspace(9, 13, 40), {"A": 0.62, "B": 1.3, "C_mid": 3e11, "R0": 0.1}, 0.005),
    ("power", np.logspace(1, 4, 30), {"k": 0.15, "E": -0.2}, 0.003),
    ("k_of_n", np.logspace(8.5, 11, 12), {"K_max": 0.15, "N0": 1.5e10}, 0.001),
    ("power_n", np.logspace(8.5, 11, 12), {"a": 3.0, "b": -0.2}, 0.001),
    ("gao_bon", np.linspace(0.2, 6, 30), {"a": 0.8, "b": 0.12}, 0.01),
    ("gao_rl", np.linspace(0.2, 8, 30), {"a": 0.7, "b": 0.25}, 0.01),
    ("saturating_exp", np.arange(0, 200, 5.0), {"A": 0.55, "y0": 0.2, "tau": 40.0}, 0.005),
]
IDS = [p[0] for p in PLANTED]


def test_every_law_is_planted():
    assert set(IDS) == set(LAWS)


@pytest.mark.parametrize("law,x,params,sd", PLANTED, ids=IDS)
def test_recovers_planted_parameters(law, x, params, sd):
    y = _noisy(law, x, params, sd)
    res = estimate(law, x, y, seed=1, n_boot=60)
    assert res.identified, res.reasons
    for name, true in params.items():
        ci = res.intervals[name]
        assert ci.estimate == pytest.approx(true, rel=0.15), (name, res.fit.params)
        assert ci.low <= ci.estimate <= ci.high and not ci.fixed
    assert res.fit.rmse < 3 * sd and res.fit.at_bound == ()


@pytest.mark.parametrize("law,x,params,sd", PLANTED, ids=IDS)
def test_analytic_jacobians_match_finite_differences(law, x, params, sd):
    """In natural units (the law) and in the fitter's coordinates (log for scale params)."""
    L = get_law(law)
    jac = L.jacobian(x, **params)
    for i, p in enumerate(L.params):
        h = 1e-6 * max(abs(params[p]), 1e-3)
        up, down = dict(params, **{p: params[p] + h}), dict(params, **{p: params[p] - h})
        fd = (L(x, **up) - L(x, **down)) / (2 * h)
        np.testing.assert_allclose(jac[:, i], fd, rtol=1e-5, atol=1e-8 * np.abs(fd).max(),
                                   err_msg=p)
    y = L(x, **params)
    last = L.params[-1]                                  # one fixed parameter, the rest free
    prob = Problem.make(L, x, dict(zip(L.params, L.bounds(x, y))), {last: params[last]})
    theta = prob.to_theta(params)[None, :]
    _, jt = prob.evaluate(theta)
    for i in range(len(prob.free)):
        e = np.zeros_like(theta)
        e[0, i] = 1e-6
        fd = (prob.evaluate(theta + e)[0] - prob.evaluate(theta - e)[0]) / 2e-6
        np.testing.assert_allclose(jt[0, :, i], fd[0], rtol=1e-5, atol=1e-8 * np.abs(fd).max())


def test_sigmoid_and_gao_rl_at_zero_take_their_limits():
    sig = get_law("sigmoid")
    p = {"A": 0.6, "B": 1.0, "C_mid": 1e10, "R0": 0.2}
    assert sig([0.0], **p)[0] == 0.2
    assert np.isfinite(sig.jacobian([0.0, 1e9], **p)).all()
    assert get_law("gao_rl")([0.0], a=1.0, b=1.0)[0] == 0.0


@pytest.mark.parametrize("law,x,params,sd", PLANTED, ids=IDS)
def test_solver_is_as_good_as_scipy(law, x, params, sd):
    """The batched Levenberg-Marquardt reaches at least scipy's Huber loss (trf, numerical
    Jacobian) from the same starts, on noisy data and on a sparse subset."""
    from scipy.optimize import least_squares
    L = get_law(law)
    y = _noisy(law, x, params, 3 * sd, seed=4)
    res = fit(law, x, y, n_starts=4, seed=2)
    prob = Problem.make(L, x, res.bounds, {})
    u = np.random.default_rng(2).uniform(0.05, 0.95, (4, len(prob.free)))
    starts = prob.lo + (prob.hi - prob.lo) * u
    best = min(least_squares(lambda t: prob.evaluate(t[None])[0][0] - y, t0,
                             bounds=(prob.lo, prob.hi), loss="huber", f_scale=0.05).cost
               for t0 in starts)
    assert res.loss <= best * (1 + 1e-6) + 1e-12
    assert res.loss == pytest.approx(huber_cost(res.residuals, np.ones(len(x)), 0.05))


def test_huber_loss_resists_an_outlier():
    x = np.logspace(9, 13, 30)
    params = {"A": 0.6, "B": 1.0, "C_mid": 1e11, "R0": 0.1}
    y = _noisy("sigmoid", x, params, 0.003)
    y[5] += 0.5
    res = fit("sigmoid", x, y, fixed={"R0": 0.1})
    assert res.params["A"] == pytest.approx(0.6, rel=0.05)
    assert res.params["R0"] == 0.1


def test_window_bootstrap_and_holdout():
    x = np.logspace(9, 13, 40)
    params = {"A": 0.62, "B": 1.3, "C_mid": 3e11, "R0": 0.1}
    y = _noisy("sigmoid", x, params, 0.01)
    res = fit("sigmoid", x, y, window=(1e10, 1e13), fixed={"R0": 0.1})
    assert res.window[0] >= 1e10 and len(res.x) < len(x)
    ci = bootstrap(res, n_boot=40, seed=7, fixed={"R0": 0.1})
    assert ci["A"].low <= 0.62 <= ci["A"].high and ci["A"].low < res.params["A"] < ci["A"].high
    assert ci["R0"].fixed and np.isnan(ci["R0"].low) and str(ci["R0"]) == "0.1 (fixed)"
    fitted, err = holdout_error("sigmoid", x, y, n_holdout=8, fixed={"R0": 0.1})
    assert err < 0.05 and fitted.window[1] < x.max()
    with pytest.raises(ValueError, match="fixed"):
        bootstrap(res, n_boot=5, fixed={"R0": 0.2})


def test_bootstrap_is_reproducible():
    x = np.tile(np.arange(0, 50, 5.0), 2)
    y = _noisy("saturating_exp", x, {"A": 0.5, "y0": 0.2, "tau": 12.0}, 0.01, seed=3)
    res = fit("saturating_exp", x, y)
    a, b = bootstrap_draws(res, n_boot=50, seed=11), bootstrap_draws(res, n_boot=50, seed=11)
    np.testing.assert_array_equal(a.values, b.values)
    assert bootstrap(res, n_boot=50, seed=11) == bootstrap(res, n_boot=50, seed=11)
    assert not np.array_equal(a.values, bootstrap_draws(res, n_boot=50, seed=12).values)
    assert estimate("saturating_exp", x, y, seed=5, n_boot=30).describe() == \
        estimate("saturating_exp", x, y, seed=5, n_boot=30).describe()


# ------------------------------------------------------------------ identification rules

def test_count_rule_counts_distinct_x_and_seeds_once():
    assert POINTS_PER_PARAM == 2
    assert count_rule(4, 2) is None                      # 4 points for 2 parameters pass
    assert count_rule(5, 3) == "too few points: 5 distinct x for 3 free parameters (need 6)"
    steps = np.arange(0, 41, 10.0)                       # 5 evals x 2 seeds, one at C = 0
    x, y = np.tile(steps * 1e12, 2), np.tile(0.3 + 0.1 * (1 - np.exp(-steps / 15)), 2)
    a = estimate("sigmoid", x, y + 0.003 * np.arange(10) % 2, fixed={"R0": 0.3}, n_boot=20)
    assert not a.identified and a.reasons[0].startswith("too few points: 4 distinct x for 3")
    assert a.describe().startswith("not identified: too few points")
    assert "x = 0 not counted: the curve there does not depend on the free parameters" in \
        a.reasons[0]                                     # the sigmoid at C = 0 is R0, fixed
    steps = np.arange(0, 51, 10.0)                       # 6 evals, the first uninformative
    x, y = np.tile(steps * 1e12, 2), _noisy("sigmoid", np.tile(steps * 1e12, 2),
                                            {"A": 0.5, "B": 1.5, "C_mid": 2e13, "R0": 0.3}, 0.005)
    a = estimate("sigmoid", x, y, fixed={"R0": 0.3}, n_boot=20)
    assert a.reasons[0].startswith("too few points: 5 distinct x for 3 free parameters (need 6)")
    b = estimate("saturating_exp", x / 1e12, y, fixed={"y0": 0.3}, n_boot=20)
    assert not any(r.startswith("too few") for r in b.reasons)   # 5 informative x for 2


def test_fewer_points_than_parameters_is_not_fitted():
    a = estimate("sigmoid", [1e9, 1e10, 1e11], [0.2, 0.3, 0.35], fixed={"R0": 0.1}, n_boot=20)
    assert a.fit is not None and a.fit.rmse < 1e-3      # 3 points, 3 parameters: "exact"
    assert not a.identified and a.describe().startswith(
        "not identified: too few points: 3 distinct x for 3 free parameters (need 6)")
    b = estimate("sigmoid", [1.0, 2.0], [0.1, 0.2])
    assert b.fit is None and not b.identified
    assert b.reasons == ("too few points: 2 distinct x for 4 free parameters (need 8)",)
    assert not steps_to_fraction(estimate("saturating_exp", [1.0, 2.0], [0.1, 0.2])).identified


def test_a_parameter_at_its_bound_is_named():
    x = np.logspace(9, 12, 20)
    res = fit("sigmoid", x, 0.3 + 0.2 * (x > 1e11), fixed={"R0": 0.3})
    assert "B" in res.at_bound     # a step wants an infinitely steep sigmoid: B hits its cap
    a = estimate("sigmoid", x, 0.3 + 0.2 * (x > 1e11), fixed={"R0": 0.3}, n_boot=20)
    assert not a.identified and "B at its search bound (upper, 10)" in a.reasons
    assert "10" not in a.describe().split(":")[0]        # no numbers shown as a result


def test_an_interval_reaching_a_bound_is_not_identified():
    x = np.arange(0, 50, 5.0)
    res = fit("saturating_exp", x,
              _noisy("saturating_exp", x, {"A": 0.5, "y0": 0.2, "tau": 10.0}, 0.01))
    assert res.at_bound == () and res.bounds["tau"] == (0.5, 450.0)
    vals = np.tile([res.params["A"], res.params["y0"], res.params["tau"]], (100, 1))
    assert check(res, Draws(("A", "y0", "tau"), vals, (), 100, 0)) == ()
    vals[:10, 2] = 450.0                                 # 10% of draws at tau's upper bound
    reasons = check(res, Draws(("A", "y0", "tau"), vals, (), 100, 0))
    assert reasons == ("tau: 90% bootstrap interval reaches its search bound (upper, 450)",)
    assert check(res, Draws(("A", "y0", "tau"), vals[50:], (), 100, 0)) == ()
    few = check(res, Draws(("A", "y0", "tau"), vals[51:], (), 100, 0))
    assert few == ("only 49 of 100 bootstrap draws usable",)
    few = check(res, Draws(("A", "y0", "tau"), vals[:40], (), 100, 0))
    assert few[0] == "only 40 of 100 bootstrap draws usable" and len(few) == 2


def test_degenerate_data_is_not_identified():
    a = estimate("saturating_exp", np.arange(0, 100, 5.0), np.zeros(20), n_boot=20)
    assert not a.identified and a.reasons[0] == "degenerate data: y is constant (0)"


def test_fixed_parameters_are_reported_as_fixed():
    x = np.tile(np.logspace(9, 13, 12), 2)
    y = _noisy("sigmoid", x, {"A": 0.62, "B": 1.3, "C_mid": 3e11, "R0": 0.104}, 0.005)
    a = estimate("sigmoid", x, y, fixed={"R0": 0.104}, n_boot=40)
    assert a.identified, a.reasons
    r0 = a.intervals["R0"]
    assert r0.fixed and np.isnan(r0.low) and np.isnan(r0.high)
    lo, hi = a.band(x[:12])
    assert np.all(lo <= a.fit.predict(x[:12]) + 1e-9) and np.all(a.fit.predict(x[:12]) <= hi + 1e-9)
    assert np.all(hi - lo > 0)
    line = a.describe()
    assert line.startswith("A = 0.6") and line.endswith("; R0 = 0.104 (fixed)")
    assert line.count("[") == 3


def test_derived_quantities_carry_intervals_and_identification():
    x = np.tile(np.arange(0, 200, 10.0), 2)
    y = _noisy("saturating_exp", x, {"A": 0.6, "y0": 0.2, "tau": 30.0}, 0.01)
    a = estimate("saturating_exp", x, y, fixed={"y0": 0.2}, n_boot=60)
    t90 = steps_to_fraction(a)
    assert t90.identified and t90.estimate == pytest.approx(a.fit.params["tau"] * np.log(10))
    assert t90.interval.low == pytest.approx(a.intervals["tau"].low * np.log(10))
    assert t90.describe().startswith("steps to 90% of the asymptote = ")
    with pytest.raises(ValueError, match="sigmoid"):
        compute_to_fraction(a)
    flat = estimate("saturating_exp", x, np.full(len(x), 0.2), fixed={"y0": 0.2}, n_boot=20)
    q = steps_to_fraction(flat)
    assert not q.identified and "degenerate data" in q.reasons[0]


def test_compute_to_fraction_inverts_the_sigmoid():
    x = np.tile(np.logspace(9, 13, 12), 2)
    p = {"A": 0.62, "B": 1.3, "C_mid": 3e11, "R0": 0.1}
    a = estimate("sigmoid", x, _noisy("sigmoid", x, p, 0.005), fixed={"R0": 0.1}, n_boot=40)
    c90 = compute_to_fraction(a)
    assert c90.identified
    got = get_law("sigmoid")([c90.estimate], **a.fit.params)[0]
    assert got == pytest.approx(0.1 + 0.9 * (a.fit.params["A"] - 0.1))


def test_draw_ranges_stop_at_the_held_out_window():
    x = np.tile(np.arange(0, 100, 10.0), 2)
    y = _noisy("saturating_exp", x, {"A": 0.6, "y0": 0.2, "tau": 30.0}, 0.01)
    full = fit("saturating_exp", x, y)
    held = holdout("saturating_exp", x, y, n_holdout=4)
    assert held.heldout_x == (80.0, 90.0) and held.fit.window == (0.0, 70.0)
    assert draw_ranges(full, held) == ((0.0, 90.0), None)
    assert draw_ranges(held.fit, held) == ((0.0, 70.0), (70.0, 90.0))
    assert draw_ranges(held.fit) == ((0.0, 70.0), None)
    with pytest.raises(ValueError, match="splits the points"):
        holdout("saturating_exp", x, y, n_holdout=3)


# ------------------------------------------------------------------ across model sizes

def _per_size(law, sizes, params, rel_sd, seed=0):
    rng = np.random.default_rng(seed)
    true = get_law(law)(sizes, **params)
    return [Quantity("A", Interval(float(t), np.nan, np.nan, 0.9), True,
                     draws=t * (1 + rel_sd * rng.standard_normal(150))) for t in true]


def test_across_sizes_recovers_and_propagates_uncertainty():
    sizes = np.logspace(8, 11, 6)
    qs = _per_size("k_of_n", sizes, {"K_max": 0.8, "N0": 3e9}, 0.02)
    a = across_sizes("k_of_n", sizes, qs, n_boot=100)
    assert a.identified, a.reasons
    assert a.intervals["K_max"].low < 0.8 < a.intervals["K_max"].high
    noisier = _per_size("k_of_n", sizes, {"K_max": 0.8, "N0": 3e9}, 0.1)
    wide = across_sizes("k_of_n", sizes, noisier, n_boot=100)
    width = lambda r: r.intervals["K_max"].high - r.intervals["K_max"].low   # noqa: E731
    assert width(wide) > 2 * width(a)


def test_across_three_or_four_sizes():
    sizes = np.array([1.5e5, 7.5e5, 4.5e6, 2e7])
    qs = _per_size("power_n", sizes, {"a": 2.0, "b": -0.1}, 0.01)
    three = across_sizes("power_n", sizes[:3], qs[:3], n_boot=50)
    assert not three.identified
    assert three.reasons[0] == "too few points: 3 distinct x for 2 free parameters (need 4)"
    four = across_sizes("power_n", sizes, qs, n_boot=50)
    assert four.identified, four.reasons
    assert four.intervals["b"].low < -0.1 < four.intervals["b"].high
    qs[1] = Quantity("A", Interval(0.3, np.nan, np.nan, 0.9), False, ("A at its search bound",))
    left = across_sizes("power_n", sizes, qs, n_boot=50)
    assert not left.identified and left.notes == ("N = 7.5e5 left out: A not identified",)


def test_bad_inputs():
    with pytest.raises(TooFewPoints, match="free parameters"):
        fit("sigmoid", [1.0, 2.0], [0.1, 0.2])
    with pytest.raises(KeyError, match="cannot fix"):
        fit("power", [1.0, 2.0, 3.0], [0.1, 0.2, 0.3], fixed={"Z": 1})
    assert isinstance(fit("power", [1.0, 2.0, 3.0], [0.1, 0.2, 0.3]), FitResult)
