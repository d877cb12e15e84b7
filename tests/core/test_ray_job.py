import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(shutil.which("ray", path=os.path.dirname(sys.executable)) is None,
                    reason="the ray CLI is not in this environment")
def test_ray_job_submit_against_a_local_head(tmp_path):
    """`ray start --head`, `ray job submit --working-dir . -- python -m core.tune ...`, stop."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(["bash", str(ROOT / "deploy" / "ray_job_smoke.sh")], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout + proc.stderr
    assert list(tmp_path.glob("runs/smoke/*/report/report.html"))
