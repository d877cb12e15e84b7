import json

from tests.conftest import run_py

HEAVY = ("torch", "ray", "transformers", "verl", "vllm", "mlflow", "datasets")


def test_import_core_is_light():
    code = ("import sys, json, core, core.plugins, core.config, core.tune, core.schema;"
            "print(json.dumps(sorted(m for m in sys.modules)))")
    proc = run_py("-c", code)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    assert heavy == [], f"`import core` pulled in heavy modules: {heavy[:10]}"


def test_registry_and_validation_stay_light():
    """Listing plugins and validating a config must not import the heavy stack either."""
    code = ("import sys, json; from core.config import load; load('demo', []);"
            "print(json.dumps(sorted(m for m in sys.modules)))")
    proc = run_py("-c", code)
    assert proc.returncode == 0, proc.stderr
    heavy = [m for m in json.loads(proc.stdout) if m.split(".")[0] in HEAVY]
    assert heavy == []
