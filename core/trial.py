"""One trial: a validated config in, per-step metrics (and checkpoints) out.

``run_trial`` is what every driver calls (the Ray Tune trainable, a test); it picks the
backend and continues from the checkpoint the caller hands it (Tune's, in a grid), so a killed
trial resumes at its last evaluation step.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.config import Config


def latest_checkpoint(workdir: Path) -> Path | None:
    ckpts = sorted((Path(workdir) / "checkpoints").glob("step_*"))
    done = [c for c in ckpts if (c / "trainer.json").exists()]
    return done[-1] if done else None


def run_trial(cfg: Config, workdir: Path, resume_from: Path | None = None,
              log=print) -> Iterator[tuple[dict[str, float], Path | None]]:
    """Yield (metrics, checkpoint folder or None) for every RL step after ``resume_from``
    (a checkpoint folder this trial wrote; None starts at step 0)."""
    from core.backends import get_backend
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    yield from get_backend(cfg.backend).run(cfg, workdir, resume=resume_from, log=log)
