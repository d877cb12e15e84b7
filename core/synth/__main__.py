"""``python -m core.synth grid=NAME [overrides] [--verl-command --workdir DIR | --ingest PATH]``

Synthesises the SFT examples of every distinct ``data.sft_source`` among the grid's trials
(``data.sft_source={teacher: ...}`` must be set), so the trials find them cached:

- no flag: sample on this machine with ``core.backends.rollout`` (tiny and small teachers);
- ``--verl-command --workdir DIR``: write DIR/prompts.parquet and print the command of verl's
  generation server (vLLM) that samples them on a GPU cluster (``core/synth/verl.py``);
- ``--ingest PATH``: verify, dedupe, cap and store that command's output parquet.

Exit status 2 with one message on a config error, as ``python -m core.tune``.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from core import config, data, synth
from core.errors import ConfigError, UserError

USAGE = __doc__.split("\n\n")[0].strip("`")


def _hooks() -> synth.Data:
    return synth.Data(select=lambda c, role, n=None: data.select(c, role, n=n),
                      fingerprint=data.fingerprint)


def _take(argv: list[str], flag: str, value: bool) -> str | bool | None:
    if flag not in argv:
        return None
    i = argv.index(flag)
    if not value:
        argv.pop(i)
        return True
    if i + 1 >= len(argv):
        raise UserError(f"{flag} needs a value")
    argv.pop(i)
    return argv.pop(i)


def run(argv: list[str]) -> int:
    verl_cmd = _take(argv, "--verl-command", False)
    workdir = _take(argv, "--workdir", True)
    ingest = _take(argv, "--ingest", True)
    grids = [a for a in argv if a.startswith("grid=")]
    if not grids:
        raise UserError(f"usage: {USAGE}")
    overrides = [a for a in argv if not a.startswith("grid=")]
    cfg = config.load(grids[0].split("=", 1)[1], overrides)
    if cfg.data.sft_source is None:
        raise ConfigError("data.sft_source", None, "set it to synthesise: "
                                 "data.sft_source={teacher: <size, folder or hub id>, k: 8, cap: 2}")
    done: set[str] = set()
    for _, trial in config.expand(cfg) or [({}, cfg)]:
        if trial.data.sft_source is None or synth.key(trial) in done:
            continue
        done.add(synth.key(trial))
        if verl_cmd:
            from core.synth import verl
            if not workdir:
                raise UserError("--verl-command needs --workdir DIR (where prompts.parquet goes)")
            where = Path(workdir) / synth.key(trial)
            print(f"# wrote {verl.write_prompts(trial, _hooks(), where)}; run on the GPU cluster:")
            print(" \\\n    ".join(shlex.quote(c) for c in verl.generation_command(trial, where)))
        elif ingest:
            from core.synth import verl
            print(f"# stored {verl.ingest(trial, _hooks(), Path(ingest))}")
        else:
            print(f"# stored {synth.synthesize(trial, _hooks())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
