"""Reading answers out of model responses, and the value comparisons the Guru verifiers use.

Nothing here runs model code or math-verify; ``guru.py`` composes these per domain (its
docstring states each domain's rule). Every function takes untrusted text and returns
``None`` / ``False`` for what it cannot read; none raises on malformed input.
"""
from __future__ import annotations

import ast
import json
import math
import re
from typing import Any, NamedTuple

MAX_LITERAL = 200_000          # longest text handed to json / ast.literal_eval


# --- where the answer is ----------------------------------------------------------------------
def final_text(response: str) -> tuple[str | None, str]:
    """The part of a response that may hold its answer: what follows the last ``</think>``.

    A response with ``<think>`` but no ``</think>`` never finished thinking (truncated), so
    it has no answer at all: ``(None, why)``. Without either tag the whole response counts."""
    if not isinstance(response, str):
        return None, f"response is a {type(response).__name__}, not text"
    if "</think>" in response:
        return response.rsplit("</think>", 1)[1], ""
    if "<think>" in response:
        return None, "unfinished <think> block: nothing after </think>"
    return response, ""


def _balanced(text: str, i: int, open_: str = "{", close: str = "}") -> int | None:
    """Index just past the bracket matching ``text[i]`` (no quote awareness), else None."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def boxed_all(text: str) -> list[tuple[int, str]]:
    """``(position, content)`` of every ``\\boxed{...}`` / ``\\fbox{...}`` (braces balanced)
    and ``\\boxed 5`` (one token), in order."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)(?![A-Za-z])(\s*)(\{)?", text):
        if m.group(2):
            end = _balanced(text, m.end() - 1)
            if end is not None:
                out.append((m.start(), text[m.end():end - 1].strip()))
        elif m.group(1):
            tok = re.match(r"[^\s$\\]+", text[m.end():])
            if tok:
                out.append((m.start(), tok.group(0)))
    return out


def last_boxed(text: str) -> str | None:
    found = boxed_all(text)
    return found[-1][1] if found else None


def answer_tags(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group(1).strip())
            for m in re.finditer(r"<answer>(.*?)</answer>", text, flags=re.DOTALL | re.IGNORECASE)]


def last_answer_tag(text: str) -> str | None:
    found = answer_tags(text)
    return found[-1][1] if found else None


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(position, language, body)`` of every closed ```` ``` ```` block, in order."""
    return [(m.start(), m.group(1).lower(), m.group(2))
            for m in re.finditer(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n`]*\n(.*?)```", text, flags=re.DOTALL)]


# --- values -----------------------------------------------------------------------------------
def parse_literal(text: str) -> tuple[bool, Any]:
    """``(True, value)`` for JSON or a Python literal, else ``(False, None)``."""
    s = text.strip()
    if not s or len(s) > MAX_LITERAL:
        return False, None
    for parse in (json.loads, ast.literal_eval):
        try:
            return True, parse(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return False, None


def _match_quoted(text: str, i: int, open_: str, close: str) -> int | None:
    """Like ``_balanced`` but skipping brackets inside '...' / "..." strings."""
    depth, quote, j = 0, None, i
    while j < len(text):
        c = text[j]
        if quote:
            if c == "\\":
                j += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return None


def literal_spans(text: str, opener: str) -> list[Any]:
    """Every top-level bracketed literal (``opener`` is ``[`` or ``{``) in ``text`` that
    parses, in order: a structure with prose around it."""
    close = {"[": "]", "{": "}"}[opener]
    out, i = [], 0
    while True:
        i = text.find(opener, i)
        if i < 0:
            return out
        end = _match_quoted(text, i, opener, close)
        ok, value = parse_literal(text[i:end]) if end else (False, None)
        if ok:
            out.append(value)
            i = end
        else:
            i += 1


def as_plain(value: Any) -> Any:
    """numpy arrays (parquet) and tuples as lists, recursively."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    return value


def norm_text(s: Any) -> str:
    """Case, spacing, quotes, markdown emphasis, a trailing period, ``\\text{}`` wrappers."""
    s = strip_latex(str(s))
    s = s.replace("**", "").replace("`", "")
    s = " ".join(s.lower().split())
    return s.strip(" '\"").rstrip(".").strip()


# --- LaTeX and numbers ------------------------------------------------------------------------
_WRAPPERS = r"\\(?:text|textrm|textbf|textit|mathrm|mathbf|mathit|operatorname|mbox|rm|bf)\s*"


def strip_latex(s: str) -> str:
    """Remove math delimiters, spacing commands and text wrappers; keep the content."""
    s = s.strip()
    s = re.sub(r"\^\s*\{\s*([-+]?\w+)\s*\}", r"^\1", s)           # x^{2} -> x^2
    s = re.sub(r"_\s*\{\s*(\w+)\s*\}", r"_\1", s)                  # H_{2}O -> H_2O
    for _ in range(3):
        s = re.sub(_WRAPPERS + r"\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right|displaystyle|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\[,;:!]|\\ |~", " ", s)
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = s.replace("$", "") if s.count("$") >= 2 and s.startswith("$") else s
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("−", "-")
    return s.strip()


class Quantity(NamedTuple):
    value: float
    unit: str            # normalised unit text ("" when none); "%" for percentages
    digits: int          # significant figures as written
    ulp: float | None    # value of one unit in the last written digit; None: an exact integer


_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+\.?\d*|\.\d+)"
_SCI = re.compile(rf"^(?P<m>{_NUM})\s*(?:[eE](?P<e1>[-+]?\d+)|(?:\\times|\\cdot|[x×*·])\s*10\s*\^\s*\{{?\s*(?P<e2>[-+]?\d+)\s*\}}?)")
_PLAIN = re.compile(rf"^(?P<m>{_NUM})")
_POW10 = re.compile(r"^10\s*\^\s*\{?\s*(?P<e>[-+]?\d+)\s*\}?")
_FRAC = re.compile(r"^(?P<s>[-+]?)\\frac\s*\{\s*(?P<a>\d+(?:\.\d+)?)\s*\}\s*\{\s*(?P<b>\d+(?:\.\d+)?)\s*\}")
_SLASH = re.compile(r"^(?P<a>[-+]?\d+(?:\.\d+)?)\s*/\s*(?P<b>\d+(?:\.\d+)?)(?![\d.])")

def _sig(m: str) -> tuple[int, float | None]:
    """Significant figures and the value of the last written place of a mantissa
    (None for an integer written without a decimal point)."""
    m = m.lstrip("+-").replace(",", "")
    if "." in m:
        whole, frac = m.split(".", 1)
        digits = (whole + frac).lstrip("0") or "0"
        return len(digits), 10.0 ** -len(frac)
    return len(m.lstrip("0") or "0"), None


_SI_PREFIX = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3, "µ": 1e-6, "u": 1e-6,
              "n": 1e-9, "p": 1e-12, "c": 1e-2, "d": 1e-1}
# symbols that take SI prefixes (kJ, mV, µm, nm, MPa, kmol, mM, ...)
_SI_BASE = ("m", "g", "s", "A", "K", "mol", "Hz", "N", "Pa", "J", "W", "C", "V", "F", "Ω", "S",
            "Wb", "T", "H", "L", "M", "eV", "cal", "bar", "Da")
# units and unit words taken as they are
_UNIT_WORDS = {
    "deg", "degC", "degF", "rad", "sr", "min", "h", "hr", "hrs", "day", "days", "yr", "yrs", "year",
    "years", "atm", "torr", "Torr", "mmHg", "psi", "lb", "lbs", "ft", "inch", "inches", "mi", "mph",
    "rpm", "ohm", "ohms", "amu", "kWh", "Btu", "gal", "oz", "dB", "ppm", "ppb", "cc", "mL", "ml",
    "meter", "meters", "metre", "metres", "second", "seconds", "minute", "minutes", "hour", "hours",
    "gram", "grams", "kilogram", "kilograms", "liter", "liters", "litre", "litres", "mole", "moles",
    "joule", "joules", "watt", "watts", "volt", "volts", "amp", "amps", "ampere", "amperes", "newton",
    "newtons", "kelvin", "hertz", "pascal", "pascals", "coulomb", "coulombs", "farad", "farads",
    "tesla", "henry", "dollar", "dollars", "cent", "cents", "unit", "units", "times", "cycles",
    "revolutions", "rev", "photons", "molecules", "atoms", "electrons", "particles", "cells",
    "people", "items", "ways", "feet", "foot", "miles", "km/h", "kmh", "N/C", "per",
}


def _known_token(tok: str) -> bool:
    if tok in _UNIT_WORDS:
        return True
    return any(tok == pre + base for base in _SI_BASE for pre in _SI_PREFIX)


_UNIT_TOKEN = re.compile(r"([A-Za-zµΩ%]+)\s*(?:\^\s*\(?\s*([-+]?\d+)\s*\)?)?|(/)|([()])|(\S)")


def _unit(rest: str, strict: bool) -> str | None:
    """The unit after a number in a canonical form (``m/s^2``, ``m s^{-2}`` and ``m·s⁻²``
    all become ``m*s^-2``; ``30^\\circ`` is ``deg``; ``%``); ``""`` when there is none; None
    when the rest is not a unit. In strict mode only known unit symbols and words count,
    so ``2x`` is not 2 of a unit ``x``."""
    u = rest.strip()
    u = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°|\bdegrees?\b", " deg ", u)
    u = u.replace("\\%", "%").replace("\\Omega", "Ω").replace("\\mu", "µ").replace("μ", "µ")
    u = re.sub(r"\bper\s*cent(age)?\b|\bpercent(age)?\b", "%", u)
    u = u.replace("\\cdot", " ").replace("·", " ").replace("*", " ").replace("\\", " ")
    u = u.replace("{", "").replace("}", "").replace("²", "^2").replace("³", "^3").replace("⁻", "-")
    u = re.sub(r"deg\s*([CF])\b", r"deg\1", u).strip().rstrip(".").strip()
    if not u:
        return ""
    dims: dict[str, int] = {}
    denominator = False
    for word, exp, slash, paren, other in _UNIT_TOKEN.findall(u):
        if slash:
            denominator = True
        elif paren:
            continue
        elif other:
            return None
        else:
            if strict and word != "%" and not _known_token(word):
                return None
            power = int(exp or 1) * (-1 if denominator else 1)
            dims[word] = dims.get(word, 0) + power
    if not dims:
        return None
    if list(dims.items()) == [("%", 1)]:
        return "%"
    return "*".join(w if e == 1 else f"{w}^{e}" for w, e in sorted(dims.items()) if e)


def quantity(text: str, strict_units: bool = True) -> Quantity | None:
    """A number with an optional unit: ``2.5\\ \\text{m/s}^2``, ``6.02e23``,
    ``6.02 \\times 10^{23}``, ``-0.75\\,\\text{V}``, ``30^\\circ``, ``\\$1,200``, ``45\\%``,
    ``\\frac{3}{4}``, ``3/4``. None when the text is not one number (and unit)."""
    s = strip_latex(str(text)).replace("\\$", "$").strip()
    s = re.sub(r"^([-+]?)\s*\$\s*", r"\1", s).strip()          # currency
    if not s:
        return None
    m = _FRAC.match(s) or _SLASH.match(s)
    if m:
        a, b = float(m.group("a")), float(m.group("b"))
        if b == 0:
            return None
        sign = -1.0 if m.groupdict().get("s") == "-" else 1.0
        value, rest, digits, ulp = sign * a / b, s[m.end():], 15, None
    elif (m := _POW10.match(s)):
        value, rest, digits, ulp = 10.0 ** int(m.group("e")), s[m.end():], 15, None
    else:
        m = _SCI.match(s)
        exp = int(m.group("e1") or m.group("e2")) if m else 0
        m = m or _PLAIN.match(s)
        if not m:
            return None
        mant = m.group("m")
        digits, ulp = _sig(mant)
        if exp or ulp is not None:
            ulp = (ulp if ulp is not None else 1.0) * 10.0 ** exp
        try:
            value = float(mant.replace(",", "")) * 10.0 ** exp
        except (ValueError, OverflowError):
            return None
        rest = s[m.end():]
    unit = _unit(rest, strict_units)
    if unit is None or not math.isfinite(value):
        return None
    return Quantity(value, unit, digits, ulp)


def unit_scale(u: str, v: str) -> float | None:
    """Factor f with ``x u == x * f v`` when the units differ only by an SI prefix."""
    if u == v:
        return 1.0
    for base in sorted(_SI_BASE, key=len, reverse=True):
        for a_pre in _SI_PREFIX:
            if u == a_pre + base:
                for b_pre in _SI_PREFIX:
                    if v == b_pre + base:
                        return _SI_PREFIX[a_pre] / _SI_PREFIX[b_pre]
    return None


def close_enough(a: Quantity, g: Quantity, rel: float | None = None) -> bool:
    """``a`` (answer) against ``g`` (ground truth), both in g's unit.

    With ``rel``: within that relative tolerance. Without: equal up to the precision as
    written - the answer rounds to a ground truth written with decimals and at least two
    significant figures, within 2% (``0.3612`` for ``0.36``), or the ground truth rounds to
    an answer written with at least
    ``min(3, digits of g)`` significant figures (``8645.1`` for ``8645.09``); a ground truth
    written as a plain integer must be matched exactly."""
    x, y = a.value, g.value
    if math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
        return True
    if rel is not None:
        return math.isclose(x, y, rel_tol=rel, abs_tol=1e-9)
    slack = 1 + 1e-9
    if g.ulp is not None and g.digits >= 2 and abs(x - y) <= min(0.5 * g.ulp * slack, 0.02 * abs(y)):
        return True
    return (a.ulp is not None and g.ulp is not None and a.digits >= min(3, g.digits)
            and abs(x - y) <= 0.5 * a.ulp * slack)


def same_quantity(pred: Quantity, gold: Quantity, rel: float | None = None) -> bool:
    """Numbers with units: a unit missing on either side is accepted; different units must
    differ only by an SI prefix (``2.5 kJ`` = ``2500 J``); a percentage equals its
    fraction when only one side has ``%`` (``45%`` and ``0.45``)."""
    pu, gu = pred.unit, gold.unit
    factors = [1.0]
    if pu and gu and pu != gu:
        if "%" in (pu, gu):
            return False
        f = unit_scale(pu, gu)
        if f is None:
            return False
        factors = [f]
    elif pu == "%" and not gu:
        factors = [1.0, 0.01]
    elif gu == "%" and not pu:
        factors = [1.0, 100.0]
    for f in factors:
        ulp = None if pred.ulp is None else pred.ulp * f
        if close_enough(Quantity(pred.value * f, gu, pred.digits, ulp), gold, rel):
            return True
    return False


# --- lists ------------------------------------------------------------------------------------
def split_items(text: str, n: int) -> list[str]:
    """Split an answer with several parts: ``|`` first (what the prompts ask for), then
    ``;``, ``, `` (comma and space, so ``1,200`` stays one number), ``,``, `` and ``;
    the first split giving ``n`` parts wins, else the ``|`` split."""
    t = text.strip()
    for sep in (r"\|", r";", r",\s+", r",", r"\s+and\s+"):
        parts = [p.strip() for p in re.split(sep, t) if p.strip()]
        if len(parts) == n:
            return parts
    return [p.strip() for p in t.split("|") if p.strip()]


def match_multiset(preds: list, golds: list, equal) -> bool:
    """Every gold matched by a distinct pred (any order), and nothing left over."""
    if len(preds) != len(golds):
        return False
    used = [False] * len(preds)

    def assign(i: int) -> bool:
        if i == len(golds):
            return True
        for j, p in enumerate(preds):
            if not used[j] and equal(p, golds[i]):
                used[j] = True
                if assign(i + 1):
                    return True
                used[j] = False
        return False
    return assign(0)


def loose_list(text: str) -> list[str] | None:
    """A list as a model may write it inside a tag: ``['a', 'b']``, ``[a, b]`` (unquoted),
    ``a, b, c``, or one item per line (``1. a``); a ``label:`` in front is dropped."""
    t = text.strip()
    spans = literal_spans(t, "[")
    if spans and isinstance(spans[-1], list) and all(not isinstance(x, (list, dict)) for x in spans[-1]):
        return [str(x) for x in spans[-1]]
    m = list(re.finditer(r"\[([^\[\]]*)\]", t))
    if m:
        inner = m[-1].group(1)
        return [p.strip().strip("'\"") for p in inner.split(",") if p.strip()]
    if ":" in t and "\n" not in t.split(":", 1)[1].strip():
        t = t.rsplit(":", 1)[1]
    lines = [ln for ln in (x.strip() for x in t.splitlines()) if ln]
    if len(lines) > 1:
        return [re.sub(r"^(?:\d+[.)]|[-*•])\s*", "", ln).strip().strip("'\"") for ln in lines]
    parts = [p.strip().strip("'\"") for p in re.split(r",|\s+(?:->|→)\s+", t) if p.strip()]
    return parts or None
