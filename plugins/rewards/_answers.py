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
    """The last non-empty ``\\boxed{}`` content."""
    found = [body for _, body in boxed_all(text) if body]
    return found[-1] if found else None


def answer_tags(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group(1).strip())
            for m in re.finditer(r"<answer>(.*?)</answer>", text, flags=re.DOTALL | re.IGNORECASE)]


def last_answer_tag(text: str) -> str | None:
    found = [body for _, body in answer_tags(text) if body]
    return found[-1] if found else None


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(position, language, body)`` of every closed ```` ``` ```` block, in order (also a
    one-line ```` ```json {"output": 1}``` ````)."""
    out = []
    for m in re.finditer(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n`]*\n(.*?)```|```[ \t]*(json)?[ \t]*([\[{\"].*?)```",
                         text, flags=re.DOTALL):
        if m.group(2) is not None:
            out.append((m.start(), m.group(1).lower(), m.group(2)))
        else:
            out.append((m.start(), (m.group(3) or "").lower(), m.group(4)))
    return out


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
    unit: str            # canonical unit ("" when none; "%"; else SI dimensions like "m*s^-2")
    digits: int          # significant figures as written
    ulp: float | None    # value of one unit in the last written digit; None: an exact integer
    scale: float = 1.0   # the unit in SI base units (km/h: 1/3.6)


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


# --- units: each symbol as (factor to SI, SI dimensions) -----------------------------------------
def _d(**dims: int) -> dict:
    return dims


_J, _PA = _d(kg=1, m=2, s=-2), _d(kg=1, m=-1, s=-2)
_SI_PREFIX = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3, "µ": 1e-6, "u": 1e-6,
              "n": 1e-9, "p": 1e-12, "c": 1e-2, "d": 1e-1, "h": 1e2}
_PREFIXABLE = {        # symbols that take SI prefixes (kJ, mV, µm, nm, MPa, kmol, mM, ...)
    "m": (1.0, _d(m=1)), "g": (1e-3, _d(kg=1)), "s": (1.0, _d(s=1)), "A": (1.0, _d(A=1)),
    "K": (1.0, _d(K=1)), "mol": (1.0, _d(mol=1)), "Hz": (1.0, _d(s=-1)), "N": (1.0, _d(kg=1, m=1, s=-2)),
    "Pa": (1.0, _PA), "J": (1.0, _J), "W": (1.0, _d(kg=1, m=2, s=-3)), "C": (1.0, _d(A=1, s=1)),
    "V": (1.0, _d(kg=1, m=2, s=-3, A=-1)), "F": (1.0, _d(kg=-1, m=-2, s=4, A=2)),
    "Ω": (1.0, _d(kg=1, m=2, s=-3, A=-2)), "S": (1.0, _d(kg=-1, m=-2, s=3, A=2)),
    "Wb": (1.0, _d(kg=1, m=2, s=-2, A=-1)), "T": (1.0, _d(kg=1, s=-2, A=-1)),
    "H": (1.0, _d(kg=1, m=2, s=-2, A=-2)), "L": (1e-3, _d(m=3)), "M": (1e3, _d(mol=1, m=-3)),
    "eV": (1.602176634e-19, _J), "cal": (4.184, _J), "bar": (1e5, _PA), "Da": (1.66053906660e-27, _d(kg=1)),
    "Bq": (1.0, _d(s=-1)), "Gy": (1.0, _d(m=2, s=-2)), "Sv": (1.0, _d(m=2, s=-2)), "lm": (1.0, _d(cd=1)),
    "cd": (1.0, _d(cd=1)), "lx": (1.0, _d(cd=1, m=-2)),
}
_OTHER = {             # symbols and words taken as they are
    "min": (60.0, _d(s=1)), "h": (3600.0, _d(s=1)), "day": (86400.0, _d(s=1)),
    "year": (3.15576e7, _d(s=1)), "atm": (101325.0, _PA), "torr": (133.322368, _PA),
    "mmHg": (133.322387, _PA), "psi": (6894.757, _PA), "lb": (0.45359237, _d(kg=1)),
    "oz": (0.028349523125, _d(kg=1)), "ft": (0.3048, _d(m=1)), "inch": (0.0254, _d(m=1)),
    "mi": (1609.344, _d(m=1)), "mph": (0.44704, _d(m=1, s=-1)), "kWh": (3.6e6, _J),
    "Btu": (1055.06, _J), "gal": (3.785411784e-3, _d(m=3)), "amu": (1.66053906660e-27, _d(kg=1)),
    "mL": (1e-6, _d(m=3)), "deg": (1.0, _d(deg=1)), "rad": (180 / math.pi, _d(deg=1)),
    "degC": (1.0, _d(degC=1)), "degF": (1.0, _d(degF=1)), "sr": (1.0, _d(sr=1)), "dB": (1.0, _d(dB=1)),
    "ppm": (1e-6, {}), "ppb": (1e-9, {}), "rpm": (1 / 60, _d(s=-1)), "$": (1.0, {}),
}
for _w in ("times", "cycles", "revolutions", "rev", "photons", "molecules", "atoms", "electrons",
           "particles", "cells", "people", "items", "ways", "units", "unit", "cents"):
    _OTHER[_w] = (1.0, {_w: 1})
_ALIASES = {
    "meter": "m", "meters": "m", "metre": "m", "metres": "m", "second": "s", "seconds": "s", "sec": "s",
    "gram": "g", "grams": "g", "kilogram": "kg", "kilograms": "kg", "liter": "L", "liters": "L",
    "litre": "L", "litres": "L", "l": "L", "ml": "mL", "cc": "mL", "mole": "mol", "moles": "mol",
    "joule": "J", "joules": "J", "watt": "W", "watts": "W", "volt": "V", "volts": "V", "amp": "A",
    "amps": "A", "ampere": "A", "amperes": "A", "newton": "N", "newtons": "N", "kelvin": "K",
    "hertz": "Hz", "pascal": "Pa", "pascals": "Pa", "coulomb": "C", "coulombs": "C", "farad": "F",
    "farads": "F", "tesla": "T", "henry": "H", "ohm": "Ω", "ohms": "Ω", "minute": "min",
    "minutes": "min", "hour": "h", "hours": "h", "hr": "h", "hrs": "h", "yr": "year", "yrs": "year",
    "years": "year", "days": "day", "dollar": "$", "dollars": "$", "cent": "cents", "Torr": "torr",
    "lbs": "lb", "foot": "ft", "feet": "ft", "inches": "inch", "miles": "mi", "mile": "mi", "u": "amu",
}


def _symbol(word: str, strict: bool) -> tuple[float, dict] | None:
    """(factor to SI, dimensions) of one unit symbol or word."""
    word = _ALIASES.get(word, word)
    if word in _OTHER:
        return _OTHER[word]
    if word in _PREFIXABLE:
        return _PREFIXABLE[word]
    for pre, f in _SI_PREFIX.items():
        if pre and word.startswith(pre) and word[len(pre):] in _PREFIXABLE:
            factor, dims = _PREFIXABLE[word[len(pre):]]
            return f * factor, dims
    return None if strict else (1.0, {word.lower(): 1})


_UNIT_TOKEN = re.compile(r"([A-Za-zµΩ%$]+)\s*(?:\^\s*\(?\s*([-+]?\d+)\s*\)?)?|(/)|([()])|(\S)")


def _unit(rest: str, strict: bool) -> tuple[str, float] | None:
    """The unit after a number as (canonical SI dimensions, factor to SI): ``m/s^2``,
    ``m s^{-2}``, ``\\frac{m}{s^2}`` all give ``m*s^-2``; ``km/h`` is ``m*s^-1`` times
    1/3.6; ``30^\\circ`` is ``deg``; ``%``. ``("", 1)`` when there is no unit, None when
    the rest is not one: in strict mode only known symbols and words count, so ``2x`` is
    not 2 of a unit ``x``."""
    u = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"\1/(\2)", rest.strip())
    u = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°|\bdegrees?\b", " deg ", u)
    u = u.replace("\\%", "%").replace("\\Omega", "Ω").replace("\\mu", "µ").replace("μ", "µ")
    u = re.sub(r"\bper\s*cent(age)?\b|\bpercent(age)?\b", "%", u)
    u = u.replace("\\cdot", " ").replace("·", " ").replace("*", " ").replace("\\", " ").replace("\\$", "$")
    u = u.replace("{", "").replace("}", "").replace("²", "^2").replace("³", "^3").replace("⁻", "-")
    u = re.sub(r"deg\s*([CF])\b", r"deg\1", u).strip().rstrip(".").strip()
    if not u:
        return "", 1.0
    if u == "%":
        return "%", 1.0
    dims: dict[str, int] = {}
    factor, denominator = 1.0, False
    for word, exp, slash, paren, other in _UNIT_TOKEN.findall(u):
        if slash:
            denominator = True
            continue
        if paren:
            continue
        if other or word == "%":
            return None
        sym = _symbol(word, strict)
        if sym is None:
            return None
        power = int(exp or 1) * (-1 if denominator else 1)
        factor *= sym[0] ** power
        for dim, e in sym[1].items():
            dims[dim] = dims.get(dim, 0) + e * power
    canon = "*".join(d if e == 1 else f"{d}^{e}" for d, e in sorted(dims.items()) if e)
    return (canon or "1"), factor


def quantity(text: str, strict_units: bool = True) -> Quantity | None:
    """A number with an optional unit: ``2.5\\ \\text{m/s}^2``, ``6.02e23``,
    ``6.02 \\times 10^{23}``, ``-0.75\\,\\text{V}``, ``30^\\circ``, ``\\$1,200``, ``45\\%``,
    ``\\frac{3}{4}``, ``3/4``, ``v = 2.5 m/s``. None when the text is not one number (and
    unit)."""
    s = strip_latex(str(text)).replace("\\$", "$").strip()
    s = re.sub(r"^[A-Za-z](?:_\w+|_\{\w+\})?\s*(?:=|\\approx|≈)\s*", "", s)  # "v = 2.5 m/s"
    s = re.sub(r"^(?:\\approx|≈|~)\s*", "", s)
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
    if strict_units and re.fullmatch(r"[a-z]", rest):
        return None               # "2g", "3m": more likely 2 times g than 2 grams; math-verify decides
    unit = _unit(rest, strict_units)
    if unit is None or not math.isfinite(value):
        return None
    return Quantity(value, unit[0], digits, ulp, unit[1])


def close_enough(a: Quantity, g: Quantity, rel: float | None = None) -> bool:
    """``a`` (answer) against ``g`` (ground truth), both in g's unit.

    With ``rel``: within that relative tolerance. Without: equal up to the precision as
    written - the answer rounds to a ground truth written with decimals and at least two
    significant figures, within 2% (``0.3612`` for ``0.36``), or the ground truth rounds to
    an answer written with at least ``min(3, digits of g)`` significant figures (``8645.1``
    for ``8645.09``); a ground truth written as a plain integer must be matched exactly."""
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
    """Numbers with units: a unit missing on either side is accepted; units of the same
    dimensions convert (``2.5 kJ`` = ``2500 J``, ``60 km/h`` = ``16.7 m/s``); a percentage
    equals its fraction when only one side has ``%`` (``45%`` and ``0.45``)."""
    pu, gu = pred.unit, gold.unit
    factors = [1.0]
    if pu and gu:
        if pu != gu:
            return False
        factors = [pred.scale / gold.scale]
    elif pu == "%":
        factors = [1.0, 0.01]
    elif gu == "%":
        factors = [1.0, 100.0]
    for f in factors:
        ulp = None if pred.ulp is None else pred.ulp * abs(f)
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
