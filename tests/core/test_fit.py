import numpy as np
import pytest

from core.fit import LAWS, bootstrap, fit, get_law, holdout_error


def _noisy(law, x, params, sd, seed=0):
    rng = np.random.default_rng(seed)
    return get_law(law)(x, **params) + sd * rng.standard_normal(len(x))


def test_unknown_law_lists_valid_ones():
    with pytest.raises(KeyError) as err:
        get_law("chinchilla")
    for name in ("sigmoid", "power", "gao_bon", "gao_rl", "saturating_exp", "k_of_n"):
        assert name in str(err.value)


PLANTED = [
    ("sigmoid", np.logspace(9, 13, 40), {"A": 0.62, "B": 1.3, "C_mid": 3e11, "R0": 0.1}, 0.005),
    ("power", np.logspace(1, 4, 30), {"k": 0.15, "E": -0.2}, 0.003),
    ("k_of_n", np.logspace(8.5, 11, 12), {"K_max": 0.15, "N0": 1.5e10}, 0.001),
    ("gao_bon", np.linspace(0.2, 6, 30), {"a": 0.8, "b": 0.12}, 0.01),
    ("gao_rl", np.linspace(0.2, 8, 30), {"a": 0.7, "b": 0.25}, 0.01),
    ("saturating_exp", np.arange(0, 200, 5.0), {"A": 0.55, "y0": 0.2, "tau": 40.0}, 0.005),
]


@pytest.mark.parametrize("law,x,params,sd", PLANTED, ids=[p[0] for p in PLANTED])
def test_recovers_planted_parameters(law, x, params, sd):
    y = _noisy(law, x, params, sd)
    res = fit(law, x, y, seed=1)
    for name, true in params.items():
        assert res.params[name] == pytest.approx(true, rel=0.15), (name, res.params)
    assert res.rmse < 3 * sd
    assert res.at_bound == ()
    np.testing.assert_allclose(res.predict(x), y + res.residuals - res.residuals, atol=10 * sd)


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
    assert bootstrap(res, n_boot=40, seed=7, fixed={"R0": 0.1}) == ci    # explicit seed
    fitted, err = holdout_error("sigmoid", x, y, n_holdout=8, fixed={"R0": 0.1})
    assert err < 0.05 and fitted.window[1] < x.max()


def test_step_data_flags_a_parameter_at_its_bound():
    x = np.logspace(9, 12, 20)
    res = fit("sigmoid", x, 0.3 + 0.2 * (x > 1e11), fixed={"R0": 0.3})
    assert "B" in res.at_bound     # a step wants an infinitely steep sigmoid: B hits its cap


def test_bad_inputs():
    with pytest.raises(ValueError, match="free parameters"):
        fit("sigmoid", [1.0, 2.0], [0.1, 0.2])
    with pytest.raises(KeyError, match="cannot fix"):
        fit("power", [1.0, 2.0, 3.0], [0.1, 0.2, 0.3], fixed={"Z": 1})
    assert set(LAWS) >= {"sigmoid", "power", "gao_bon", "gao_rl", "saturating_exp"}
