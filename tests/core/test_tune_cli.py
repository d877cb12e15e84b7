from tests.conftest import run_py


def test_help_lists_grids_with_descriptions():
    proc = run_py("-m", "core.tune", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m core.tune grid=NAME" in proc.stdout
    for grid in ("demo", "model_scaling", "data_scaling", "sft_rl_ratio"):
        line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(grid + " "))
        assert len(line.split(None, 1)[1]) > 10   # a one-line description follows the name


def test_cfg_prints_resolved_config_and_trials():
    proc = run_py("-m", "core.tune", "grid=demo", "rl.steps=7", "grid.axes.seed=[3]", "--cfg")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "# grid demo: 3 trial(s)" in out
    assert "trial 0: model=xs, seed=3" in out
    assert "steps: 7" in out and "name: tiny" in out and "k_max: 16" in out


def test_bad_override_is_one_clear_message_without_traceback():
    proc = run_py("-m", "core.tune", "grid=demo", "eval.k_max=64", "--cfg")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "`eval.k_max`" in proc.stderr and "64" in proc.stderr


def test_missing_grid_and_unknown_option():
    proc = run_py("-m", "core.tune", "rl.steps=1")
    assert proc.returncode == 2 and "grid=NAME" in proc.stderr and "demo" in proc.stderr
    proc = run_py("-m", "core.tune", "grid=demo", "--fast")
    assert proc.returncode == 2 and "unknown option '--fast'" in proc.stderr
    proc = run_py("-m", "core.tune", "grid=demo", "steps")
    assert proc.returncode == 2 and "KEY=VALUE" in proc.stderr
    proc = run_py("-m", "core.tune", "grid=demo", "nosuch=1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nosuch" in proc.stderr
