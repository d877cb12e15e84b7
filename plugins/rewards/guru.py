"""Rule verifiers for Guru-RL-92k's six domains, dispatched by ``data_source`` prefix.

``data_source`` is ``{domain}__{source}`` (``math__combined``, ``codegen__taco``,
``logic__zebra_puzzle``, ...). What each domain checks:

- ``math``: the last ``\\boxed{...}`` against the ground truth with ``math-verify``
  (symbolic and numeric equivalence). math-verify's timeouts use ``signal.alarm``, which
  fails outside a main thread (verl runs scorers in threads), so every check runs in a
  worker *process* of a pool, where it is the main thread; a worker that does not answer in
  time (``2 x timeout_s`` per check, +10 s) is killed and its checks score 0 ("timed out").
- ``codegen``: the last fenced Python block runs in the sandbox (``sandbox.py``) against
  the record's tests, a JSON string with either ``{"functional": test_code}`` (the program
  passes when solution + test code exits 0) or ``{"inputs": [...], "outputs": [...]}``
  (stdin -> stdout, compared line by line after trimming whitespace). All tests must pass.
- ``logic``: the last ``<answer>...</answer>`` parsed as JSON or a Python literal and compared
  with the ground truth after normalisation (strings lower-cased and trimmed, numbers as
  floats): zebra puzzles (``{"header", "rows"}``: every cell), ordering puzzles (a list),
  graph and ARC puzzles (a string or a grid).
- ``simulation`` (CodeIO: predict a program's output or input): the answer (``<answer>``,
  a fenced ``json`` block or ``\\boxed{}``) parsed as JSON and compared with the expected
  value, floats within 1e-6.
- ``table``: the boxed answer against the ground truth (one value or a list): numbers within
  a relative 1e-3 (``45%`` equals ``0.45``), other strings normalised (case, ``$``,
  ``\\text{}``, trailing period).
- ``stem``: the boxed answer by normalised string match, then math-verify. An LLM judge over
  an OpenAI-compatible ``/v1/chat/completions`` URL (``judge_url``) is asked only when both
  fail; it is off by default.

Every response gets ``format`` (an answer in the expected form was found) and ``acc``
(correct) separately, and a ``reason``; a malformed response scores 0, never raises.
``GuruVerifier.score_batch`` verifies a batch in parallel (math in the process pool, code
in the sandbox's pool, both at once).
"""
from __future__ import annotations

import ast
import json
import math
import re
import threading
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from core.hookspecs import hookimpl
from core.specs import RewardSpec
from core.protocols import Score

DOMAINS = ("math", "codegen", "logic", "simulation", "table", "stem")


def domain_of(data_source: str) -> str:
    prefix = data_source.split("__", 1)[0]
    if prefix not in DOMAINS:
        raise ValueError(f"guru verifier cannot score data_source {data_source!r}: its prefix "
                         f"{prefix!r} is not one of {', '.join(DOMAINS)}")
    return prefix


# --- answer extraction -------------------------------------------------------------------
def strip_thinking(text: str) -> str:
    return text.rsplit("</think>", 1)[1] if "</think>" in text else text


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def answer_tag(text: str) -> str | None:
    found = re.findall(r"<answer>(.*?)</answer>", text, flags=re.DOTALL)
    return found[-1].strip() if found else None


def fenced_block(text: str, langs: Sequence[str]) -> str | None:
    """The last fenced block whose language is one of ``langs`` ("" = no language given)."""
    blocks = re.findall(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", text, flags=re.DOTALL)
    chosen = [body for lang, body in blocks if lang.lower() in langs]
    return chosen[-1] if chosen else None


def parse_value(text: Any) -> Any:
    """A ground truth or an answer as data: JSON, then a Python literal, else the string."""
    if hasattr(text, "tolist"):             # numpy arrays from parquet
        return text.tolist()
    if not isinstance(text, str):
        return text
    s = text.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return s


def normalise(value: Any) -> Any:
    """Case- and whitespace-insensitive strings, numbers as floats, tuples as lists."""
    value = parse_value(value) if hasattr(value, "tolist") else value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return round(float(value), 6)
    if isinstance(value, str):
        s = " ".join(value.strip().lower().split()).strip("'\"")
        try:
            return round(float(s), 6)
        except ValueError:
            return s
    if isinstance(value, dict):
        return {str(k).strip().lower(): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def close(a: Any, b: Any, tol: float = 1e-6) -> bool:
    """Structural equality with float tolerance (for CodeIO outputs)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    return a == b


# --- per-domain plans ------------------------------------------------------------------------
@dataclass
class Plan:
    """What one response needs: an answer, and math checks / programs to run, then ``finish``
    turns their results into (correct, reason)."""
    pred: str | None
    format: float
    math: list[tuple[str, str]] = field(default_factory=list)
    programs: list[tuple[str, str]] = field(default_factory=list)
    finish: Callable[[list, list], tuple[bool, str]] | None = None
    verdict: tuple[bool, str] = (False, "")


def _no_answer(what: str) -> Plan:
    return Plan(None, 0.0, verdict=(False, f"no {what} found"))


def plan_math(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    pred = last_boxed(strip_thinking(response))
    if pred is None:
        return _no_answer("\\boxed{} answer")
    gold = str(parse_value(gt) if not isinstance(gt, str) else gt)
    return Plan(pred, 1.0, math=[(gold, pred)],
                finish=lambda m, _: m[0])


def plan_stem(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    text = strip_thinking(response)
    pred = last_boxed(text)
    if pred is None:
        pred = answer_tag(text)
    if pred is None:
        return _no_answer("\\boxed{} or <answer> answer")
    gold = str(gt)
    if normalise(_clean_tex(pred)) == normalise(_clean_tex(gold)):
        return Plan(pred, 1.0, verdict=(True, "answer matches"))

    def finish(m, _):
        ok, reason = m[0]
        if ok or judge is None:
            return ok, reason
        return judge(extra.get("question") or extra.get("prompt") or "", gold, pred)
    return Plan(pred, 1.0, math=[(gold, pred)], finish=finish)


def _clean_tex(s: str) -> str:
    s = re.sub(r"\\text\{([^}]*)\}", r"\1", s)
    s = s.replace("\\%", "%").replace("$", "").replace("\\,", "").replace("\\!", "")
    return s.strip().rstrip(".").strip()


def _as_number(s: str) -> tuple[float, bool] | None:
    t = _clean_tex(s).replace(",", "").replace(" ", "")
    pct = t.endswith("%")
    try:
        return float(t.rstrip("%")), pct
    except ValueError:
        return None


def table_equal(pred: str, gold: str) -> bool:
    p, g = _as_number(pred), _as_number(gold)
    if p is not None and g is not None:
        (pv, pp), (gv, gp) = p, g
        candidates = [pv] + ([pv / 100] if pp and not gp else []) + ([pv * 100] if gp and not pp else [])
        return any(math.isclose(c, gv, rel_tol=1e-3, abs_tol=1e-9) for c in candidates)
    return normalise(_clean_tex(pred)) == normalise(_clean_tex(gold))


def _match_all(parts: list[str], gold: list[str]) -> bool:
    left = list(parts)
    for g in gold:
        hit = next((i for i, p in enumerate(left) if table_equal(p, g)), None)
        if hit is None:
            return False
        left.pop(hit)
    return not left


def plan_table(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    pred = last_boxed(strip_thinking(response))
    if pred is None:
        return _no_answer("\\boxed{} answer")
    gold = parse_value(gt)
    if isinstance(gold, list):     # several answers, in any order
        parts = [p for p in re.split(r"\s*[,|;]\s*", pred) if p]
        ok = _match_all(parts, [str(g) for g in gold])
    else:
        ok = table_equal(pred, str(gold))
    return Plan(pred, 1.0, verdict=(ok, "answer matches" if ok else "wrong answer"))


def plan_logic(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    pred = answer_tag(strip_thinking(response))
    if pred is None:
        return _no_answer("<answer>...</answer>")
    got, want = parse_value(pred), parse_value(gt)
    if isinstance(want, dict) and "rows" in want:          # zebra puzzle: compare the grid
        rows = got.get("rows") if isinstance(got, dict) else got
        ok = normalise(rows) == normalise(want["rows"])
        return Plan(pred, float(isinstance(rows, list)), verdict=(ok, "grid matches" if ok else "wrong grid"))
    ok = normalise(got) == normalise(want)
    return Plan(pred, 1.0, verdict=(ok, "answer matches" if ok else "wrong answer"))


def plan_simulation(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    text = strip_thinking(response)
    pred = answer_tag(text) or fenced_block(text, ("json",)) or last_boxed(text)
    if pred is None:
        return _no_answer("<answer>, ```json``` or \\boxed{} answer")
    got, want = parse_value(pred), parse_value(gt)
    for key in ("output", "input"):   # CodeIO wraps the value as {"output": ...}
        if isinstance(want, dict) and set(want) == {key} and not (isinstance(got, dict) and key in got):
            want = want[key]
        if isinstance(got, dict) and set(got) == {key} and not isinstance(want, dict):
            got = got[key]
    ok = close(got, want)
    return Plan(pred, 1.0, verdict=(ok, "value matches" if ok else "wrong value"))


def _same_output(out: str, expected: str) -> bool:
    a = [line.rstrip() for line in out.strip().splitlines()]
    b = [line.rstrip() for line in str(expected).strip().splitlines()]
    if a == b:
        return True
    ta, tb = " ".join(a).split(), " ".join(b).split()
    if len(ta) != len(tb):
        return False
    try:
        return all(x == y or math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-6)
                   for x, y in zip(ta, tb))
    except ValueError:
        return False


def plan_codegen(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    code = fenced_block(strip_thinking(response), ("python", "py", "python3", ""))
    if code is None:
        return _no_answer("```python``` code block")
    tests = parse_value(gt)
    if isinstance(tests, dict) and "functional" in tests:
        return Plan(code, 1.0, programs=[(code + "\n\n" + tests["functional"], "")],
                    finish=lambda _, r: (r[0].ok, "tests pass" if r[0].ok else r[0].reason))
    if isinstance(tests, dict) and "inputs" in tests and "outputs" in tests:
        ins, outs = list(tests["inputs"]), list(tests["outputs"])

        def finish(_, results):
            for i, (res, want) in enumerate(zip(results, outs)):
                if not res.ok:
                    return False, f"test {i}: {res.reason}"
                if not _same_output(res.stdout, want):
                    return False, f"test {i}: wrong output"
            return True, f"{len(outs)} tests pass"
        stdin = ["\n".join(x) if isinstance(x, list) else str(x) for x in ins]
        return Plan(code, 1.0, programs=[(code, s) for s in stdin], finish=finish)
    return Plan(code, 1.0, verdict=(False, "ground truth has neither 'functional' nor 'inputs'/'outputs'"))


PLANNERS = {"math": plan_math, "codegen": plan_codegen, "logic": plan_logic,
            "simulation": plan_simulation, "table": plan_table, "stem": plan_stem}


# --- math-verify in worker processes ------------------------------------------------------------
def math_check(gold: str, pred: str, timeout_s: int = 5) -> tuple[bool, str]:
    """math-verify equivalence of two answers; call it in a process's main thread."""
    from math_verify import parse, verify
    wrap = lambda s: s if "\\boxed" in s else "\\boxed{" + s + "}"   # noqa: E731
    g = parse(wrap(gold), parsing_timeout=timeout_s)
    if not g:
        return False, "ground truth did not parse"
    p = parse(wrap(pred), parsing_timeout=timeout_s)
    if not p:
        return False, "answer did not parse"
    ok = verify(g, p, timeout_seconds=timeout_s)
    return bool(ok), "equivalent" if ok else "not equivalent"


class MathPool:
    """math-verify in long-lived worker processes (``python -m plugins.rewards._math_worker``),
    fed chunks of checks over a pipe. Plain subprocesses rather than ``multiprocessing``:
    no re-import of the caller's ``__main__`` (a spawn-context trap in user scripts) and no
    fork of a trainer holding torch threads. A chunk that does not answer within
    ``2 * timeout_s`` s per check (+10) has its worker killed and scores 0 ("timed out")."""

    def __init__(self, workers: int, timeout_s: int) -> None:
        self.workers, self.timeout_s = workers, timeout_s
        self._idle: list = []
        self._lock = threading.Lock()

    def _start(self):
        import os
        import subprocess
        import sys
        from pathlib import Path
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        return subprocess.Popen([sys.executable, "-m", "plugins.rewards._math_worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                text=True, bufsize=1)

    def _chunk(self, pairs: list[tuple[str, str]]) -> list[tuple[bool, str]]:
        import select
        with self._lock:
            proc = self._idle.pop() if self._idle else None
        if proc is None or proc.poll() is not None:
            proc = self._start()
        limit = len(pairs) * 2 * self.timeout_s + 10
        try:
            proc.stdin.write(json.dumps([pairs, self.timeout_s]) + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], limit)
            line = proc.stdout.readline() if ready else ""
        except (BrokenPipeError, OSError) as exc:
            proc.kill()
            return [(False, f"math worker failed: {exc}")] * len(pairs)
        if not line:
            proc.kill()
            proc.wait()
            return [(False, f"math check timed out after {limit} s (worker killed)")] * len(pairs)
        with self._lock:
            self._idle.append(proc)
        return [(bool(ok), reason) for ok, reason in json.loads(line)]

    def check(self, pairs: list[tuple[str, str]]) -> list[tuple[bool, str]]:
        """Verdicts in order; the pairs go to the workers in chunks (few pipe round trips)."""
        if not pairs:
            return []
        per = max(1, min(16, -(-len(pairs) // self.workers)))
        chunks = [pairs[i:i + per] for i in range(0, len(pairs), per)]
        with ThreadPoolExecutor(min(self.workers, len(chunks))) as pool:
            return [v for chunk in pool.map(self._chunk, chunks) for v in chunk]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for proc in idle:
            proc.stdin.close()
            proc.kill()
            proc.wait()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# --- optional LLM judge -------------------------------------------------------------------------
def make_judge(url: str, model: str, api_key: str | None = None, timeout_s: float = 30.0):
    """A judge over an OpenAI-compatible chat-completions URL: True when it answers YES."""
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/v1/chat/completions")

    def judge(question: str, gold: str, pred: str) -> tuple[bool, str]:
        body = {"model": model, "temperature": 0.0, "max_tokens": 4, "messages": [
            {"role": "system", "content": "You grade answers. Reply YES if the candidate answer is "
                                          "equivalent to the reference answer, otherwise NO."},
            {"role": "user", "content": f"Question: {question}\nReference: {gold}\nCandidate: {pred}"}]}
        req = urllib.request.Request(endpoint, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {api_key}"} if api_key else {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                reply = json.load(resp)["choices"][0]["message"]["content"]
        except Exception as exc:   # the judge is advisory: failures score 0 and say why
            return False, f"judge failed: {type(exc).__name__}: {exc}"
        ok = reply.strip().upper().startswith("YES")
        return ok, f"judge said {reply.strip()[:20]!r}"
    return judge


# --- the reward plugin ------------------------------------------------------------------------------
class GuruVerifier:
    """``verifier(data_source, response, ground_truth, extra_info) -> Score`` and
    ``verifier.score_batch([(data_source, response, ground_truth, extra_info), ...])``."""

    def __init__(self, format_weight: float = 0.0, workers: int | None = None,
                 math_timeout_s: int = 5, sandbox_limits=None, judge_url: str | None = None,
                 judge_model: str = "judge", judge_api_key: str | None = None) -> None:
        import os
        self.format_weight = format_weight
        self.workers = workers or max(2, os.cpu_count() or 1)
        self.math = MathPool(self.workers, math_timeout_s)
        self.sandbox_limits = sandbox_limits
        self._sandbox = None
        self.judge = make_judge(judge_url, judge_model, judge_api_key) if judge_url else None

    @property
    def sandbox(self):
        if self._sandbox is None:
            from plugins.rewards.sandbox import Limits, Sandbox
            self._sandbox = Sandbox(self.sandbox_limits or Limits())
        return self._sandbox

    def __call__(self, data_source: str, response: str, ground_truth: Any,
                 extra_info: dict | None = None) -> Score:
        return self.score_batch([(data_source, response, ground_truth, extra_info)])[0]

    def score_batch(self, items: Sequence[tuple[str, str, Any, dict | None]]) -> list[Score]:
        plans = [PLANNERS[domain_of(ds)](resp, gt, extra or {}, self.judge)
                 for ds, resp, gt, extra in items]
        math_jobs = [job for p in plans for job in p.math]
        programs = [job for p in plans for job in p.programs]
        with ThreadPoolExecutor(2) as both:     # math pool and sandbox pool at once
            m = both.submit(self.math.check, math_jobs)
            s = both.submit(lambda: self.sandbox.map(programs, self.workers) if programs else [])
            math_results, program_results = m.result(), s.result()
        scores, mi, si = [], 0, 0
        for p in plans:
            mres = math_results[mi:mi + len(p.math)]
            sres = program_results[si:si + len(p.programs)]
            mi, si = mi + len(p.math), si + len(p.programs)
            ok, reason = p.finish(mres, sres) if p.finish else p.verdict
            acc = float(ok)
            scores.append(Score(score=acc + self.format_weight * p.format, acc=acc,
                                format=p.format, pred=p.pred, reason=reason))
        return scores

    def close(self) -> None:
        self.math.close()


@hookimpl
def agentic_rl_rewards():
    yield RewardSpec(
        name="guru", factory=GuruVerifier, kind="rule", data_sources=tuple(d + "__" for d in DOMAINS),
        description="Guru-RL-92k verifiers: math-verify, sandboxed code tests, logic, CodeIO, table, STEM")
