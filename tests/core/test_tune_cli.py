from tests.conftest import run_py


def test_help_lists_grids_with_descriptions():
    proc = run_py("-m", "core.tune", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m core.tune grid=NAME" in proc.stdout
    for grid in ("demo", "model_scaling", "data_scaling", "sft_rl_ratio"):
        line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(grid + " "))
        assert len(line.split(None, 1)[1]) > 10   # a one-line description follows the name


def test_cfg_prints_resolved_config_and_trials():
    proc = run_py("-m", "core.tune", "grid=smoke", "rl.steps=7", "grid.axes.seed=[3]", "--cfg")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "# grid smoke: 3 trial(s)" in out
    assert "trial 0: model=xs, seed=3" in out
    assert "steps: 7" in out and "name: tiny" in out and "k_max: 16" in out


def test_bad_override_is_one_clear_message_without_traceback():
    proc = run_py("-m", "core.tune", "grid=smoke", "eval.k_max=64", "--cfg")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "`eval.k_max`" in proc.stderr and "64" in proc.stderr


def test_missing_grid_and_unknown_option():
    proc = run_py("-m", "core.tune", "rl.steps=1")
    assert proc.returncode == 2 and "grid=NAME" in proc.stderr and "demo" in proc.stderr
    proc = run_py("-m", "core.tune", "grid=smoke", "--fast")
    assert proc.returncode == 2 and "unknown option '--fast'" in proc.stderr
    proc = run_py("-m", "core.tune", "grid=smoke", "steps")
    assert proc.returncode == 2 and "KEY=VALUE" in proc.stderr
    proc = run_py("-m", "core.tune", "grid=smoke", "nosuch=1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nosuch" in proc.stderr


def test_cfg_reads_the_data_and_reports_what_a_run_would(tmp_path):
    proc = run_py("-m", "core.tune", "grid=smoke", "--cfg")
    assert proc.returncode == 0, proc.stderr
    assert "#   train: 2048 records (arith/L2: 1024, arith/L3: 1024)" in proc.stdout
    assert "GPU-hours" in proc.stdout and "grid total" in proc.stdout
    # a broken Guru folder fails --cfg, naming the file, row and field
    from plugins.datasets import _guru_sample
    folder = _guru_sample.write(tmp_path / "guru", n_train=20, n_eval=4)
    import pyarrow.parquet as pq
    f = next((folder / "train").glob("table__*.parquet"))
    rows = pq.read_table(f).to_pylist()
    rows[2]["reward_model"] = {"style": "rule", "ground_truth": None}
    import pyarrow as pa
    pq.write_table(pa.Table.from_pylist(rows), f)
    proc = run_py("-m", "core.tune", "grid=guru", f"data.path={folder}", "data.domains=[table]", "--cfg")
    assert proc.returncode == 2, proc.stdout[-500:]
    assert f"{f.name}: row 2: field reward_model.ground_truth" in proc.stderr


def test_option_lists_are_never_cut_off():
    proc = run_py("-m", "core.tune", "grid=smoke", "ladder=nope", "--cfg")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no option 'nope'" in proc.stderr and "r1_distill, tiny" in proc.stderr
    proc = run_py("-m", "core.tune", "grid=smoke", "scale=huge", "--cfg")
    assert proc.returncode == 2 and "r1" in proc.stderr


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    """An MLflow server that does not answer: the grid stops before it makes any folder."""
    proc = run_py("-m", "core.tune", "grid=smoke", "tracking.tracking_uri=http://127.0.0.1:9",
                  f"output_dir={tmp_path}/runs", "grid.axes.model=[xs]", "grid.axes.seed=[0]",
                  "data.d_sft=64", "sft.steps=1", "rl.steps=1", env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                                                                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"},
                  timeout=300)
    assert proc.returncode != 0
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))
