"""``python -m core.report`` from an MLflow store alone: no ``runs/`` folder, a parent and its
children with metric histories and per-prompt eval artifacts, the grid-level results logged
back on the parent, Markdown tables, an empty grid, bad ids."""
import json
import time

import pytest

from core.report import main, write_report
from tests.conftest import run_py
from tests.core.test_report import model_grid


def _store(tmp_path, runs, axes_parent, with_children=True):
    """A SQLite store holding ``runs`` (the structure load_runs returns) under one parent."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("grid/synthetic",
                                   artifact_location=(tmp_path / "mlartifacts").as_uri())
    parent = client.create_run(exp, tags={**axes_parent["tags"], "run_dir": "/nowhere/else"})
    pid = parent.info.run_id
    for r in runs if with_children else []:
        child = client.create_run(exp, tags={**r["tags"], "mlflow.parentRunId": pid})
        cid = child.info.run_id
        metrics = [Metric(k, v, 0, s) for k, hist in r["metrics"].items() for s, v in hist.items()]
        client.log_batch(cid, metrics=metrics,
                         params=[Param(k, v) for k, v in r["params"].items()],
                         tags=[RunTag("trial_dir", "/gone")])       # no trial folder to read
        for step, vec in r["evals"].items():
            client.log_dict(cid, {"step": step, "pass_at_1": vec}, f"evals/step_{step:06d}.json")
        client.set_terminated(cid)
    client.set_terminated(pid)
    return uri, pid, client


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("store")
    parent, runs = model_grid(report=("findings", "scaling"))        # 3 sizes x 2 seeds, 5 evals
    return tmp, *_store(tmp, runs, parent)


def test_run_id_alone_writes_the_report_and_logs_the_fits(store, tmp_path, monkeypatch):
    tmp, uri, pid, client = store
    monkeypatch.chdir(tmp_path)                                      # no runs/ anywhere here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t0 = time.time()
    assert main(["--run-id", pid, f"output_dir={tmp_path}/runs"]) == 0
    took = time.time() - t0
    page = tmp_path / "runs" / "synthetic" / pid / "report" / "report.html"
    text = page.read_text()
    assert "Pass@1 before and after RL" in text and "not identified" in text
    assert "n/a" not in text.split("Pass@1 before and after RL")[1].split("</table>")[0]
    for name in ("pass1_vs_step.png", "passk_vs_k.png", "creativity_vs_step.png",
                 "pass1_vs_flops.png", "gain_per_flop.png", "steps_to_90_vs_n.png",
                 "ceiling_vs_n.png"):
        assert (page.parent / name).stat().st_size > 1000, name
    run = client.get_run(pid)
    m, tags = run.data.metrics, run.data.tags
    assert m["fit/model_xs/sigmoid/identified"] == 0.0 and "fit/model_xs/sigmoid/A" not in m
    assert m["fit/model_m/satexp/identified"] == 1.0
    a = "fit/model_m/satexp/A"
    assert m[f"{a}_low"] < m[a] < m[f"{a}_high"]
    assert m["gain/model_m_low"] > 0
    assert tags["fit/model_xs/sigmoid"].startswith("not identified: too few points")
    assert "not identified with 3 values of N" in tags["finding/law/A_satexp/all"]
    artifacts = {a.path for a in client.list_artifacts(pid, "report")}
    assert "report/report.html" in artifacts and "report/pass1_vs_flops.png" in artifacts
    print(f"demo-size report from MLflow: {took:.1f}s")
    assert took < 30


def test_tables_print_markdown_from_mlflow(store, capsys):
    _, uri, pid, client = store
    assert main(["--run-id", pid, "--tracking-uri", uri, "--table", "gains"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| trials (seeds pooled) | N | seeds |") and "model=xs" in out
    assert main(["--run-id", pid, "--tracking-uri", uri, "--table", "fits",
                 "--table", "findings"]) == 0
    out = capsys.readouterr().out
    assert "### fits" in out and "### findings" in out and "(fixed)" in out
    assert main(["--run-id", pid, "--tracking-uri", uri, "--table", "nope"]) == 2
    assert "tables: findings, gains, fits, across" in capsys.readouterr().err


def test_bad_ids_and_stores_fail_with_a_message(store, tmp_path, capsys):
    _, uri, _, _ = store
    assert main(["--run-id", "nope", "--tracking-uri", uri]) == 2
    assert "no parent run 'nope'" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path}/none.db"
    assert main(["--run-id", "x", "--tracking-uri", missing]) == 2
    assert "no MLflow store" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    assert main(["grid=synthetic", "--tracking-uri", uri, f"output_dir={tmp_path}/runs",
                 "--no-log"]) == 0            # newest parent of the grid, found in the store


def test_grid_without_trials_gets_a_page_that_says_so(tmp_path):
    parent, runs = model_grid()
    uri, pid, client = _store(tmp_path, runs, parent, with_children=False)
    page = write_report(uri, pid, tmp_path / "run", log=lambda _: None)
    assert page == tmp_path / "run" / "report" / "report.html"
    assert "No finished trial" in page.read_text() and "no child runs" in page.read_text()
    assert "report/report.html" in {a.path for a in client.list_artifacts(pid, "report")}


def test_help():
    proc = run_py("-m", "core.report", "--help", timeout=60)
    assert proc.returncode == 0 and "--run-id" in proc.stdout and "--table" in proc.stdout


def test_driver_logs_per_prompt_evals_as_artifacts(tmp_path):
    """The grid callback turns a trial's per-prompt list into evals/step_<n>.json."""
    from core.grid import PER_PROMPT, PER_PROMPT_DOMAIN, _ProgressAndMlflow
    from core.tracking import Tracker
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cb = _ProgressAndMlflow({}, uri, "grid/x", "parent", 2)
    tracker = Tracker(uri, "grid/x")
    run = tracker.client.create_run(tracker.experiment_id).info.run_id
    cb._tracker, cb.runs["t1"] = tracker, run

    class Trial:
        trial_id, config = "t1", {}
    result = {"step": 0, "val/pass_at_1": 0.5, "val/creativity_index": 0.9, "trial_dir": "/x",
              PER_PROMPT: [0.25, 0.75], PER_PROMPT_DOMAIN: ["arith", "rev"]}
    cb.on_trial_result(0, [], Trial(), result)
    cb.on_trial_result(0, [], Trial(), result)                   # a repeated step: logged once
    from core.report.runs import _evals
    assert _evals(tracker.client, run) == ({0: [0.25, 0.75]}, ["arith", "rev"])
    hist = tracker.client.get_metric_history(run, "val/pass_at_1")
    assert len(hist) == 1 and json.dumps(tracker.client.get_run(run).data.metrics)
