"""Rule verifiers for Guru-RL-92k's six domains, dispatched by ``data_source``.

``data_source`` is mostly ``{domain}__{source}`` (``math__combined``, ``codegen__taco``,
``logic__zebra_puzzle_dataset``, ...), as Reasoning360's preprocessing writes it, with two
exceptions that ``domain_of`` maps: WebInstruct rows say ``stem_web`` (domain stem), and
the ARC rows (files ``logic__arcagi1/2``, ``logic__barc``) may say ``simulation__arcagi1``
or ``simulation__barc`` (Reasoning360 scores those as logic grids; so do we).

Where the answer is: only after the last ``</think>``. A response with ``<think>`` and no
``</think>`` never finished thinking and has no answer (format 0); decoy answers inside the
thinking are never read. What each domain checks (the forms the Guru prompts ask for):

- ``math`` (prompt: "output the final answer within \\boxed{}"): the last ``\\boxed{}``
  against the ground truth with ``math-verify`` (symbolic and numeric equivalence; ``0.5``
  is not ``50``; its unit stripping, which made ``2t`` equal ``2``, is off and only
  ``\\text{}`` units after a number are dropped); a percent sign on one side only is
  dropped. math-verify's timeouts use
  ``signal.alarm``, which fails outside a main thread (verl runs scorers in threads), so
  every check runs in a worker *process* of a pool, where it is the main thread; a worker
  that does not answer in time (``2 x timeout_s`` per check, +10 s) is killed and its checks
  score 0 ("timed out").
- ``codegen`` (prompts ask for a ```` ```python ```` block): the last ```` ```python ````
  block (else the last block without a language; earlier Python blocks only when they
  define names it uses, e.g. a helper) runs in the sandbox (``sandbox.py``)
  against the record's tests, a JSON string with either
  ``{"inputs": [...], "outputs": [...]}`` (stdin -> stdout per test, compared token by
  token: numbers within 1e-6, ``yes``/``no`` in any case) or ``{"functional": test_code}``
  (LeetCode, TACO / PrimeIntellect function calls, LiveCodeBench; for LeetCode the record's
  ``extra_info["prefix"]`` - imports, ``ListNode``, ``TreeNode``, helpers - comes first).
  Function tests run in the trusted harness (``_harness.py``): the answer runs in its own
  process and answers calls with data only, so nothing it does (exit, atexit, excepthooks,
  patched builtins, printed markers, killed parents, threads, introspection, ``__eq__``
  that always says True) can make failing tests pass; the harness proves a pass with a
  per-run nonce the answer never sees. All tests must pass.
- ``logic`` (prompts ask for ``<answer>...</answer>``): the last tag, read leniently (JSON,
  a Python literal, or the structure found inside prose):
  zebra puzzles (``{"header", "rows"}``): every cell, case-, space- and hyphen-insensitive,
  columns matched by header and rows by position when the answer has a header; ordering
  puzzles: the list in order, case-insensitive, quoted or not (``[Emma, Liam]``); graph
  puzzles: the one word, case-insensitive; ARC / BARC: the integer grid exactly.
- ``simulation`` (CodeIO; the prompt asks for ``"output": <value>`` or
  ``"input": {...}`` inside ``\\boxed{}`` and also for a ```` ```json ```` block): the last
  of those (or an ``<answer>`` tag) that parses, with or without the key and the braces
  around it, against the ground truth ``"output": <json>`` / ``"input": {...}``; the wrong
  key scores 0; JSON-looking strings and ``"true"``/``"false"`` compare as the values they
  spell (as Reasoning360 does), floats within 1e-6. An input prediction that is not the
  reference input is right when the prompt's reference code (``main_solution``, kept in
  ``extra_info["codeio"]`` by the loader) run in the sandbox on it returns the given output
  - the prompt asks for *a* feasible input; without that code it scores 0. With no box or
  fence, a ``{"output": ...}`` object in the text is read (as Reasoning360 does).
- ``table`` (HiTab / MultiHierTT: "output the final answer within \\boxed{}. If there are
  multiple answers, please output them separated by |"): numbers within a relative 1e-3
  after ``$``, ``\\$``, thousands separators and trailing unit words are dropped; ``45%``
  equals ``45`` and ``0.45`` (a ``%`` on one side only), but ``0.45`` is not ``45``; other
  strings normalised (case, ``\\text{}``, spacing, trailing period). Several answers
  (ground truth ``a|b|c``) match in any order, separated by ``|`` (or ``;`` or ``,``);
  ``1:2`` is 0.5, and an expression for a number (``57+65``) goes to math-verify.
- ``stem`` (WebInstruct: "output the final answer within \\boxed{}"): the last
  ``\\boxed{}`` (else ``<answer>``) matches when the normalised strings are equal
  (``\\text{H}_2\\text{O}`` = ``H2O``); else, when both are one number with an optional
  unit (``2.5\\ \\text{m/s}^2``, ``6.02e23`` = ``6.02 \\times 10^{23}``, ``-0.75\\,\\text{V}``,
  ``30^\\circ``, ``v = 2.5 m/s``), when the numbers agree to the precision written
  (``_answers.close_enough``: ``0.3612`` for ``0.36``, ``8645.1`` for ``8645.09``, not
  ``0.54`` for ``0.5``) after converting units of the same SI dimensions (``2500 J`` =
  ``2.5 kJ``, ``60 km/h`` = ``16.7 m/s``, ``mol/L`` = ``M``; a unit missing on one side is
  accepted, different dimensions are not); else math-verify (``\\frac{mv^2}{2}`` =
  ``\\frac{1}{2}mv^2``). An LLM judge over an OpenAI-compatible ``/v1/chat/completions``
  URL (``judge_url``) is asked only when the rules fail; it is off by default.

Where Reasoning360's own scorers are wrong we stay right: they read answers inside
``<think>``, take CodeIO's first code block, compare zebra cells and people's names in
ordering puzzles case-sensitively, accept ``50`` for ``0.5`` in math, and ``eval`` table
answers; a codegen answer there can pass by exiting with status 0.

Every response gets ``format`` (an answer in the expected form was found) and ``acc``
(correct) separately, and a ``reason``; a malformed response scores 0, never raises. A
math or table response whose final text is nothing but a short answer (``825``,
``57|65``) is read without a box, as Reasoning360 reads it, with format 0.
``GuruVerifier.score_batch`` verifies a batch in parallel (math in the process pool, code
in the sandbox's pool, both at once).
"""
from __future__ import annotations

import json
import math
import re
import secrets
import threading
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from core.hookspecs import hookimpl
from core.protocols import Score
from core.specs import RewardSpec
from plugins.rewards._answers import (answer_tags, as_plain, boxed_all, fenced_blocks, final_text,
                                      last_answer_tag, literal_spans, loose_list, match_multiset,
                                      norm_text, parse_literal, quantity, same_quantity,
                                      split_items, strip_latex)
from plugins.rewards._answers import last_boxed  # noqa: F401  (re-exported)
from plugins.rewards._code import (answer_code, functional_program, harness_program,  # noqa: F401
                                  harness_verdict, same_output)

DOMAINS = ("math", "codegen", "logic", "simulation", "table", "stem")
DATA_SOURCE_PREFIXES = tuple(d + "__" for d in DOMAINS) + ("stem_",)


def domain_of(data_source: str) -> str:
    """The verifier domain of a ``data_source``: its ``{domain}__`` prefix, ``stem_web`` ->
    stem, ``simulation__arcagi*`` / ``simulation__barc*`` -> logic (ARC grids)."""
    ds = str(data_source)
    prefix = ds.split("__", 1)[0]
    if prefix == "simulation" and re.match(r"simulation__(arcagi|barc)", ds):
        return "logic"
    if prefix in DOMAINS:
        return prefix
    if ds.startswith("stem_"):
        return "stem"
    raise ValueError(f"guru verifier cannot score data_source {data_source!r}: its prefix "
                     f"{prefix!r} is not one of {', '.join(DOMAINS)} (or stem_web)")


# --- kept for callers: values ---------------------------------------------------------------------
def strip_thinking(text: str) -> str:
    return text.rsplit("</think>", 1)[1] if "</think>" in text else text


def parse_value(text: Any) -> Any:
    """A ground truth or an answer as data: JSON, then a Python literal, else the string."""
    if hasattr(text, "tolist"):             # numpy arrays from parquet
        return as_plain(text)
    if not isinstance(text, str):
        return text
    ok, value = parse_literal(text)
    return value if ok else text.strip()


def normalise(value: Any) -> Any:
    """Case- and whitespace-insensitive strings, numbers as floats, tuples as lists."""
    value = as_plain(value)
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
    """Structural equality with float tolerance (CodeIO values)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
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


def _no_answer(what: str, why: str = "") -> Plan:
    return Plan(None, 0.0, verdict=(False, why or f"no {what} found after the thinking"))


def _done(pred: Any, ok: bool, yes: str, no: str, fmt: float = 1.0) -> Plan:
    return Plan(None if pred is None else str(pred), fmt, verdict=(ok, yes if ok else no))


def _bare_answer(text: str | None) -> str | None:
    """A final text that is nothing but a short answer (``825``, ``$\\frac{1}{2}$``,
    ``57|65``): read without a box, as Reasoning360's math and table scorers do, but with
    format 0 (not the form the prompt asks for)."""
    if text is None:
        return None
    t = text.strip().strip("$").strip()
    t = re.sub(r"^(?:\*\*)?(?:so\s+|thus\s+|therefore\s+)?(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*[:=]?\s*(?:\*\*)?\s*",
               "", t, flags=re.IGNORECASE).strip()
    t = t.strip("$").rstrip(".").strip()
    if t and len(t) <= 40 and "\n" not in t and not re.search(r"[A-Za-z]{3,}\s+[A-Za-z]{3,}\s+[A-Za-z]{3,}", t):
        return t
    return None


def _text(value: Any) -> str:
    value = as_plain(value)
    return value if isinstance(value, str) else json.dumps(value)


# math ---------------------------------------------------------------------------------------------
def drop_text_unit(s: str) -> str:
    """``5 \\text{ cm}`` -> ``5``: a unit written as text after a number (math-verify's own
    unit stripping is off, see ``_extraction``)."""
    m = re.match(r"^(.*?[\d})])\s*\\(?:text|mathrm|textrm|mbox)\s*\{\s*[A-Za-z][A-Za-z .]*\}(?:\^\{?\d\}?)?\s*$", s.strip())
    return m.group(1).strip() if m else s.strip()


def _pct(s: str) -> bool:
    return bool(re.search(r"\\?%\s*\}?\s*$", s))


def _drop_pct(s: str) -> str:
    return re.sub(r"\\?%(\s*\}?)\s*$", r"\1", s).strip()


def plan_math(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    text, why = final_text(response)
    pred = last_boxed(text) if text is not None else None
    fmt = 1.0
    if pred is None:
        pred, fmt = _bare_answer(text), 0.0
    if pred is None:
        return _no_answer("\\boxed{} answer", why)
    gold = _text(gt).strip()
    if _pct(gold) != _pct(pred):          # "50\%" against "50": the number is the answer
        gold, pred_cmp = _drop_pct(gold), _drop_pct(pred)
    else:
        pred_cmp = pred
    return Plan(pred, fmt, math=[(drop_text_unit(gold), drop_text_unit(pred_cmp))], finish=lambda m, _: m[0])


# stem ---------------------------------------------------------------------------------------------
def _compact(s: str) -> str:
    """Text for a string comparison: LaTeX wrappers, case, subscripts and spaces gone
    (``\\text{H}_2\\text{O}`` = ``H2O``), except a space between two digits; powers kept
    (``10^2`` is not ``102``)."""
    s = re.sub(r"[{}_]", "", norm_text(s))
    return re.sub(r"(?<!\d)\s+|\s+(?!\d)", "", s)


def plan_stem(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    text, why = final_text(response)
    if text is None:
        return _no_answer("\\boxed{} answer", why)
    pred = last_boxed(text)
    if pred is None:
        pred = last_answer_tag(text)
    if pred is None:
        return _no_answer("\\boxed{} answer")
    gold = _text(gt).strip()
    question = extra.get("question") or extra.get("prompt") or ""

    def ask_judge(ok: bool, reason: str) -> tuple[bool, str]:
        if ok or judge is None:
            return ok, reason
        return judge(question, gold, pred)
    if _compact(pred) == _compact(gold):
        return Plan(pred, 1.0, verdict=(True, "answer matches"))
    qp, qg = quantity(pred), quantity(gold)
    if qp is not None and qg is not None:
        ok = same_quantity(qp, qg)
        reason = "number matches" if ok else "units differ" if qp.unit and qg.unit and qp.unit != qg.unit \
            else "wrong number"
        if ok or judge is None:
            return Plan(pred, 1.0, verdict=(ok, reason))
        return Plan(pred, 1.0, finish=lambda m, _: ask_judge(False, reason))
    return Plan(pred, 1.0, math=[(drop_text_unit(gold), drop_text_unit(pred))],
                finish=lambda m, _: ask_judge(*m[0]))


# table --------------------------------------------------------------------------------------------
def _table_quantity(s: str):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*", strip_latex(s))
    if m and float(m.group(2)):                              # a ratio, 1:2
        return quantity(str(float(m.group(1)) / float(m.group(2))), strict_units=False)
    return quantity(s, strict_units=False)


def table_equal(pred: str, gold: str) -> bool:
    """One table answer: numbers within a relative 1e-3 (``%`` on one side only: a
    percentage and its fraction are equal; ``1:2`` is 0.5), else normalised strings."""
    p, g = _table_quantity(pred), _table_quantity(gold)
    if p is not None and g is not None:
        return same_quantity(p, g, rel=1e-3)
    return norm_text(pred) == norm_text(gold)


def plan_table(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    text, why = final_text(response)
    pred = last_boxed(text) if text is not None else None
    fmt = 1.0
    if pred is None:
        pred, fmt = _bare_answer(text), 0.0
    if pred is None:
        return _no_answer("\\boxed{} answer", why)
    gold = as_plain(parse_value(gt) if not isinstance(gt, str) else gt)
    golds = [str(g) for g in gold] if isinstance(gold, list) else [p.strip() for p in str(gold).split("|")]
    golds = [g for g in golds if g] or [str(gold)]
    if len(golds) > 1:        # several answers, in any order
        ok = match_multiset(split_items(strip_latex(pred), len(golds)), golds, table_equal)
    else:
        ok = table_equal(pred, golds[0])
        if not ok and _table_quantity(golds[0]) is not None and _table_quantity(pred) is None:
            # an expression for a number (57+65, 2\times 3): math-verify evaluates it
            return Plan(pred, fmt, math=[(golds[0], pred)], finish=lambda m, _: m[0])
    return _done(pred, ok, "answer matches", "wrong answer", fmt=fmt)


# logic --------------------------------------------------------------------------------------------
def _cell(v: Any) -> str:
    s = norm_text(v)
    s = re.sub(r"[\s_-]+", " ", s)
    try:
        f = float(s)
        return str(int(f)) if f.is_integer() else repr(f)
    except ValueError:
        return s


def zebra_equal(ans: Any, gold: dict) -> tuple[bool, str]:
    """A zebra grid: every cell. With a header, columns are matched by name and rows by
    the first column (the position); without one, cell by cell in order."""
    g_head = [_cell(h) for h in gold.get("header") or []]
    g_rows = [[_cell(c) for c in row] for row in gold.get("rows") or []]
    if isinstance(ans, dict):
        a_head = ans.get("header")
        a_rows = ans.get("rows")
    else:
        a_head, a_rows = None, ans
    if not (isinstance(a_rows, list) and all(isinstance(r, list) for r in a_rows)):
        return False, "no grid (rows) in <answer>"
    a_rows = [[_cell(c) for c in row] for row in a_rows]
    if isinstance(a_head, list) and g_head and sorted(_cell(h) for h in a_head) == sorted(g_head):
        idx = [[_cell(h) for h in a_head].index(h) for h in g_head]
        if any(len(r) != len(a_head) for r in a_rows):
            return False, "ragged grid"
        a_rows = [[r[i] for i in idx] for r in a_rows]
        key = lambda rows: sorted(rows)          # noqa: E731  rows keyed by position (column 0)
        return (key(a_rows) == key(g_rows) and len({r[0] for r in a_rows}) == len(a_rows)), "grid"
    return a_rows == g_rows, "grid"


def _grid(text: str) -> list | None:
    """An integer grid inside the tag: a (nested) list literal, or rows of integers."""
    for value in reversed(literal_spans(text, "[")):
        if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
            try:
                return [[int(c) if isinstance(c, (int, str)) and str(c).strip().lstrip("-").isdigit() else None
                         for c in r] for r in value]
            except (TypeError, ValueError):
                return None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if lines and all(re.fullmatch(r"-?\d+(?:[ ,]+-?\d+)*", ln) for ln in lines):
        return [[int(x) for x in re.split(r"[ ,]+", ln)] for ln in lines]
    return None


def logic_kind(data_source: str, gold: Any) -> str:
    ds = data_source.lower()
    for key, kind in (("zebra", "zebra"), ("ordering", "ordering"), ("graph", "graph"),
                      ("arcagi", "grid"), ("barc", "grid")):
        if key in ds:
            return kind
    if isinstance(gold, dict) and "rows" in gold:
        return "zebra"
    if isinstance(gold, list) and gold and all(isinstance(r, list) for r in gold):
        return "grid"
    if isinstance(gold, list):
        return "ordering"
    return "graph" if isinstance(gold, str) and re.fullmatch(r"[A-Za-z]+", gold.strip()) else "value"


def plan_logic(response: str, gt: Any, extra: dict, judge=None, data_source: str = "") -> Plan:
    text, why = final_text(response)
    pred = last_answer_tag(text) if text is not None else None
    if pred is None:
        return _no_answer("<answer>...</answer>", why)
    gold = as_plain(parse_value(gt))
    kind = logic_kind(data_source, gold)
    if kind == "zebra":
        ok_parse, ans = parse_literal(pred)
        if not ok_parse or not isinstance(ans, (dict, list)):
            dicts = [d for d in literal_spans(pred, "{") if isinstance(d, dict)]
            ans = dicts[-1] if dicts else None
        if ans is None or not isinstance(gold, dict):
            return _done(pred, False, "", "no grid in <answer>", fmt=0.0)
        ok, what = zebra_equal(ans, gold)
        return _done(pred, ok, "grid matches", "wrong grid" if what == "grid" else what,
                     fmt=1.0 if what == "grid" else 0.0)
    if kind == "grid":
        grid = _grid(pred)
        if grid is None:
            return _done(pred, False, "", "no grid (2d array) in <answer>", fmt=0.0)
        want = [[int(c) for c in r] for r in gold] if isinstance(gold, list) else None
        return _done(pred, grid == want, "grid matches", "wrong grid")
    if kind == "ordering":
        items = loose_list(pred)
        if not items or not isinstance(gold, list):
            return _done(pred, False, "", "no list in <answer>", fmt=0.0)
        ok = [_cell(x) for x in items] == [_cell(x) for x in gold]
        return _done(pred, ok, "order matches", "wrong order")
    if kind == "graph":
        word = _cell(pred)
        m = re.fullmatch(r"(?:the\s+)?(?:next\s+step|answer|trait)\s+is\s*:?\s*([a-z]+)|[a-z]+\s+is\s+([a-z]+)", word)
        if m:
            word = m.group(1) or m.group(2)
        return _done(pred, word == _cell(gold), "answer matches", "wrong answer")
    got = parse_value(pred)
    ok = normalise(got) == normalise(gold)
    return _done(pred, ok, "answer matches", "wrong answer")


# simulation (CodeIO) ----------------------------------------------------------------------------
def _keyed(text: str) -> tuple[bool, Any]:
    """A CodeIO value as written: ``"output": 5``, ``{"input": {...}}``, ``output: [1]``,
    a bare value, or JSON inside prose."""
    s = text.strip().strip("`").strip()
    s = re.sub(r"^(?:json|python)\s*\n", "", s)
    m = re.match(r"^[\"']?(input|output)[\"']?\s*:", s)
    if m:
        s = "{\"" + m.group(1) + "\":" + s[m.end():] + "}"
    ok, value = parse_literal(s)
    if ok:
        return True, value
    spans = literal_spans(s, "{")
    return (True, spans[-1]) if spans else (False, None)


def _codeio_norm(v: Any) -> Any:
    """As Reasoning360 compares CodeIO values: strings that spell JSON arrays/objects or
    true/false are those values."""
    if isinstance(v, str):
        s = v.strip()
        if (s[:1], s[-1:]) in (("[", "]"), ("{", "}")):
            try:
                return _codeio_norm(json.loads(s))
            except ValueError:
                pass
        if s.lower() in ("true", "false"):
            return s.lower() == "true"
        return v
    if isinstance(v, list):
        return [_codeio_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _codeio_norm(x) for k, x in v.items()}
    return v


def codeio_gold(gt: Any) -> tuple[str | None, Any]:
    """``"output": <json>`` / ``"input": {...}`` (no outer braces, as Reasoning360 writes
    it), the same wrapped in braces, or a bare value: (key or None, value)."""
    if isinstance(gt, str):
        ok, value = _keyed(gt)
        if not ok:
            return None, gt
    else:
        value = as_plain(gt)
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("input", "output"):
        key = next(iter(value))
        return key, value[key]
    return None, value


def codeio_task(prompt: str) -> dict | None:
    """For a CodeIO input prediction: the reference code and the given output, read from
    the prompt Reasoning360 writes ("Given the following output: ... Tip: Here is a
    reference code snippet ... <code>"), so a different input that also produces the given
    output can be checked by running the code. None for other prompts."""
    if not isinstance(prompt, str):
        return None
    given = re.search(r"Given the following output:\s*\n(.*?)\nCan you predict a feasible input", prompt, re.DOTALL)
    code = re.search(r"not copy spans of code directly\.\s*\n(.*?)\s*(?:Please output the final answer within ```json```)?\s*$",
                     prompt, re.DOTALL)
    if not given or not code or "def main_solution" not in code.group(1):
        return None
    return {"refcode": code.group(1), "given_output": given.group(1).strip()}


_RUN_INPUT = """
import json as _json, sys as _sys
_args = _json.loads({args!r})
_out = main_solution(**_args)
_sys.stdout.flush()
print({marker!r} + _json.dumps(_out), flush=True)
"""


def _feasible_input_plan(body: str, got: dict, task: dict) -> Plan:
    """Run the reference code on the answer's input; right when it returns the given output."""
    marker = secrets.token_hex(8) + ":"
    program = task["refcode"] + "\n" + _RUN_INPUT.format(args=json.dumps(got), marker=marker)
    ok_given, given = parse_literal(task["given_output"])

    def finish(_, results):
        res = results[0]
        line = next((ln[len(marker):] for ln in reversed(res.stdout.splitlines()) if ln.startswith(marker)), None)
        if not res.ok or line is None:
            return False, f"not the reference input, and the reference code failed on it: {res.reason}"
        ok_out, out = parse_literal(line)
        if ok_out and ok_given and close(_codeio_norm(out), _codeio_norm(given)):
            return True, "a different input that gives the same output"
        return False, "wrong input: the reference code gives a different output"
    return Plan(body, 1.0, programs=[(program, "")], finish=finish)


def plan_simulation(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    text, why = final_text(response)
    if text is None:
        return _no_answer("answer", why)
    found = [(pos, body) for pos, body in boxed_all(text)]
    found += [(pos, body) for pos, lang, body in fenced_blocks(text) if lang in ("json", "", "python", "py")]
    found += answer_tags(text)
    key, want = codeio_gold(gt)
    chosen = None
    for _, body in sorted(found, key=lambda x: x[0], reverse=True):   # the last that parses
        ok, got = _keyed(body)
        if not ok:
            continue
        if isinstance(got, dict) and key is not None:
            other = "input" if key == "output" else "output"
            if key in got and (len(got) == 1 or not isinstance(want, dict) or key not in want):
                got = got[key]
            elif set(got) == {other}:
                return _done(body, False, "", f"answered {other!r}, the question asks for {key!r}")
        chosen = (body, got)
        break
    if chosen is None:
        keyed = [d for d in literal_spans(text, "{") if isinstance(d, dict) and key in d] if key else []
        if not keyed:      # no box or fence: a {"output": ...} object in the text (Reasoning360 reads it)
            return _no_answer("\\boxed{\"output\": ...}, ```json``` or <answer> answer that parses")
        chosen = (json.dumps(keyed[-1]), keyed[-1][key])
    body, got = chosen
    if close(_codeio_norm(got), _codeio_norm(want)):
        return _done(body, True, "value matches", "")
    task = extra.get("codeio") if isinstance(extra.get("codeio"), dict) else codeio_task(extra.get("prompt_text", ""))
    if key == "input" and isinstance(got, dict) and task and isinstance(task.get("refcode"), str) \
            and isinstance(task.get("given_output"), str):
        return _feasible_input_plan(body, got, task)
    return _done(body, False, "", "wrong value")


# codegen ------------------------------------------------------------------------------------------
def plan_codegen(response: str, gt: Any, extra: dict, judge=None) -> Plan:
    text, why = final_text(response)
    code = answer_code(text) if text is not None else None
    if code is None:
        return _no_answer("```python``` code block", why)
    tests = parse_value(gt)
    if isinstance(tests, dict) and isinstance(tests.get("functional"), str):
        prefix = extra.get("prefix") if isinstance(extra.get("prefix"), str) else ""
        program, stdin, answer, nonce = functional_program(code, tests["functional"], prefix)
        return Plan(code, 1.0, programs=[(program, stdin, answer)],
                    finish=lambda _, r: harness_verdict(r[0], nonce))
    if isinstance(tests, dict) and "inputs" in tests and "outputs" in tests:
        ins, outs = list(as_plain(tests["inputs"])), list(as_plain(tests["outputs"]))
        if not ins or len(ins) != len(outs):
            return Plan(code, 1.0, verdict=(False, "ground truth has no tests (or unpaired inputs/outputs)"))

        def finish(_, results):
            for i, (res, want) in enumerate(zip(results, outs)):
                if not res.ok:
                    return False, f"test {i}: {res.reason}"
                want = "\n".join(want) if isinstance(want, list) else str(want)
                if not same_output(res.stdout, want):
                    return False, f"test {i}: wrong output"
            return True, f"{len(outs)} tests pass"
        stdin = ["\n".join(x) if isinstance(x, list) else str(x) for x in ins]
        return Plan(code, 1.0, programs=[(code, s) for s in stdin], finish=finish)
    return Plan(code, 1.0, verdict=(False, "ground truth has neither 'functional' nor 'inputs'/'outputs'"))


PLANNERS = {"math": plan_math, "codegen": plan_codegen, "logic": plan_logic,
            "simulation": plan_simulation, "table": plan_table, "stem": plan_stem}


def plan(data_source: str, response: str, gt: Any, extra: dict, judge=None) -> Plan:
    """The plan for one response; a malformed one (or a bad record) scores 0 with a reason."""
    domain = domain_of(data_source)
    try:
        if domain == "logic":
            return plan_logic(response, gt, extra, judge, data_source=data_source)
        return PLANNERS[domain](response, gt, extra, judge)
    except Exception as exc:        # a verifier bug or a broken record is a 0, never a crash
        return Plan(None, 0.0, verdict=(False, f"verifier error: {type(exc).__name__}: {exc}"[:300]))


# --- math-verify in worker processes ------------------------------------------------------------
_EXTRACTION = None


def _extraction():
    """math-verify's default extraction without its unit stripping, which drops a trailing
    ``t``, ``m``, ``s``, ``ab``, ... after a number (``2t`` would equal ``2``, ``x+2t``
    equal ``x+2``); ``drop_text_unit`` removes real ``\\text{}`` units instead."""
    global _EXTRACTION
    if _EXTRACTION is None:
        from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
        from math_verify import ExprExtractionConfig, LatexExtractionConfig
        _EXTRACTION = [LatexExtractionConfig(normalization_config=NormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False)),
            ExprExtractionConfig()]
    return _EXTRACTION


def math_check(gold: str, pred: str, timeout_s: int = 5) -> tuple[bool, str]:
    """math-verify equivalence of two answers; call it in a process's main thread."""
    from math_verify import parse, verify
    wrap = lambda s: s if "\\boxed" in s else "\\boxed{" + s + "}"   # noqa: E731
    g = parse(wrap(gold), extraction_config=_extraction(), parsing_timeout=timeout_s)
    if not g:
        return False, "ground truth did not parse"
    p = parse(wrap(pred), extraction_config=_extraction(), parsing_timeout=timeout_s)
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
        plans = [plan(ds, resp, gt, dict(extra or {}), self.judge) for ds, resp, gt, extra in items]
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
            try:
                ok, reason = p.finish(mres, sres) if p.finish else p.verdict
            except Exception as exc:      # never raise for what a response contains
                ok, reason = False, f"verifier error: {type(exc).__name__}: {exc}"[:300]
            acc = float(ok)
            scores.append(Score(score=acc + self.format_weight * p.format, acc=acc,
                                format=p.format, pred=p.pred, reason=reason))
        return scores

    def close(self) -> None:
        self.math.close()


@hookimpl
def agentic_rl_rewards():
    yield RewardSpec(
        name="guru", factory=GuruVerifier, kind="rule", data_sources=DATA_SOURCE_PREFIXES,
        description="Guru-RL-92k verifiers: math-verify, sandboxed code tests, logic, CodeIO, table, STEM")
