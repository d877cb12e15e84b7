"""Play an environment in the terminal, seeing exactly what the policy sees.

    python -m plugins.environments list
    python -m plugins.environments play maze [--seed N] [--level L] [--verbose] [--expert]
                                             [--set KEY=VALUE ...]

Observations are printed verbatim; every line this program adds starts with ``#`` (the
reward and done after each turn, the return at the end). Actions are read one per line from
standard input, so a game can be piped in; ``--expert`` lets the expert play instead.
"""
from __future__ import annotations

import argparse
import sys

from core.errors import UserError


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def list_envs(reg) -> None:
    for entry in reg.entries("environments"):
        spec = entry.spec
        print(f"{spec.name}: {spec.description}")
        print(f"    levels {', '.join(map(str, spec.levels)) or '-'} ({spec.knob or 'no knob'}); "
              f"max_turns <= {spec.max_turns}; expert: {'yes' if spec.expert else 'no'}")
        print(f"    options: {', '.join(spec.options) or '-'}")


def play(reg, args) -> int:
    spec = reg.get("environments", args.name)
    options = {"level": args.level, "verbose": args.verbose}
    options = {k: v for k, v in options.items() if v is not None}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        options[key] = _value(value)
    unknown = [k for k in options if spec.options and k not in spec.options]
    if unknown:
        raise UserError(f"{spec.name} has no option {unknown[0]!r}; options: {', '.join(spec.options)}")
    env = spec.factory(**options)
    echo = not sys.stdin.isatty()
    try:
        obs = env.reset(args.seed)
        print(f"# {spec.name} level {env.level} seed {args.seed}: at most {env.max_turns} turns; "
              f"one action per line{'' if args.expert else ', end of input stops'}")
        print(obs)
        total, done, info = 0.0, False, {"success": False}
        while not done:
            print("> ", end="", flush=True)
            if args.expert:
                action = spec.expert(env)
                print(action)
            else:
                line = sys.stdin.readline()
                if not line:
                    print("\n# stopped at the end of input")
                    return 1
                action = line.rstrip("\n")
                if echo:
                    print(action)
            obs, reward, done, info = env.step(action)
            total += reward
            flags = "  invalid" * bool(info.get("invalid")) + "  out of turns" * bool(info.get("truncated"))
            print(f"# reward {reward:g}  done {done}{flags}")
            print(obs)
        answer = f"  answer {info['answer']}" if "answer" in info else ""
        print(f"# return {total:g}  success {info['success']}  turns {env.turn}{answer}")
        return 0
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugins.environments",
                                     description="list or play the text environments")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every environment with its levels and options")
    p = sub.add_parser("play", help="play an environment (actions from standard input)")
    p.add_argument("name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=int)
    p.add_argument("--verbose", action="store_true", default=None,
                   help="the natural-language format (for LLMs) instead of the compact one")
    p.add_argument("--expert", action="store_true", help="let the expert play")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="another factory option")
    args = parser.parse_args(argv)
    from core.plugins import registry
    try:
        reg = registry()
        if args.command == "list":
            list_envs(reg)
            return 0
        return play(reg, args)
    except (UserError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
