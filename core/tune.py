"""Command line: ``python -m core.tune grid=NAME [overrides] [--cfg] [--dry-run] [--help]``.

Overrides use Hydra's grammar, as in verl: ``rl.steps=5``, ``+key=value`` adds a key,
``~key`` deletes one, ``grid.axes.model=[xs,s]`` replaces an axis (``+grid.axes.seed=[0,1]``
adds one). The config is composed and validated before any Ray or model work starts; a bad
value exits with status 2 and one message naming the key, the value and what is allowed.
"""
from __future__ import annotations

import sys

from core.errors import UserError

USAGE = """\
usage: python -m core.tune grid=NAME [KEY=VALUE | +KEY=VALUE | ~KEY ...] [--cfg] [--dry-run] [--help]

Run a scaling grid: one Ray Tune trial per point of the grid's axes, logged to MLflow.

options:
  --cfg      print the resolved config, the trials it expands to, the data they select
             (loaded and checked: counts per domain and level) and their estimated cost
             (FLOPs by phase, GPU-hours), and exit
  --dry-run  with backend=verl: print, per trial, the verl command line it would run, and
             the estimated cost
  --help     show this message and the available grids

examples:
  python -m core.tune grid=demo
  python -m core.tune grid=demo rl.steps=5 +grid.axes.seed=[0,1] --cfg
  ray job submit --working-dir . -- python -m core.tune grid=demo
  python -m core.tune grid=model_scaling scale=r1 --dry-run
"""

FLAGS = ("--cfg", "--dry-run", "--help", "-h")


def help_text() -> str:
    from core.config import grid_descriptions
    descs = grid_descriptions()
    width = max(map(len, descs), default=0)
    lines = [USAGE, "grids (tune/grid/*.yaml):"]
    lines += [f"  {name:<{width}}  {desc}" for name, desc in descs.items()]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[str, list[str], set[str]]:
    """Split argv into (grid name, Hydra overrides, flags); errors are UserErrors."""
    from core.config import grid_names
    flags = {a for a in argv if a.startswith("-") and not a.startswith("~")}
    unknown = sorted(flags - set(FLAGS))
    if unknown:
        raise UserError(f"unknown option {unknown[0]!r}; allowed: {', '.join(FLAGS)} "
                        "(config values are set as key=value)")
    rest = [a for a in argv if a not in flags]
    grids = [a.split("=", 1)[1] for a in rest if a.startswith("grid=")]
    overrides = [a for a in rest if not a.startswith("grid=")]
    bad = [a for a in overrides if "=" not in a and not a.startswith("~")]
    if bad:
        raise UserError(f"cannot read argument {bad[0]!r}: overrides are KEY=VALUE, "
                        "+KEY=VALUE or ~KEY")
    if len(grids) != 1:
        raise UserError("give exactly one grid=NAME; available grids: " + ", ".join(grid_names()))
    return grids[0], overrides, flags


def render_cfg(cfg, trials) -> str:
    import yaml
    from core import schema
    head = f"# grid {cfg.grid.name}: {len(trials)} trial(s)\n"
    for i, (values, _) in enumerate(trials):
        head += f"#   trial {i}: " + ", ".join(f"{k}={v}" for k, v in values.items()) + "\n"
    return head + yaml.safe_dump(schema.to_dict(cfg), sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if {"--help", "-h"} & set(argv):
            print(help_text())
            return 0
        grid, overrides, flags = parse_args(argv)
        from core.config import expand, load
        cfg = load(grid, overrides)
        trials = expand(cfg)
        if "--cfg" in flags:
            from core.data import summary
            from core.estimate import render
            print(render_cfg(cfg, trials), end="")
            print(summary(trials))        # loads the selected data: bad data fails here
            print(render(trials))
            return 0
        if "--dry-run" in flags:
            from core.backends import get_backend
            backend = get_backend(cfg.backend)
            if backend.dry_run is None:
                raise UserError(f"--dry-run prints the command each trial runs; backend={cfg.backend} "
                                "runs trials in-process (add backend=verl, e.g. with ladder=r1_distill scale=r1)")
            from core.estimate import render
            print(backend.dry_run(cfg, trials))
            print("\n" + render(trials))
            return 0
        from core.grid import run_grid   # heavy imports (ray, torch) start here
        return run_grid(cfg, trials)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
