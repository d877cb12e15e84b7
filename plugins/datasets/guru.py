"""Guru-RL-92k (LLM360): six reasoning domains, loaded by hub id or from a local folder.

Layout (hub ``LLM360/guru-RL-92k`` or a folder with the same shape)::

    train/{domain}__{source}_{size}.parquet          e.g. train/math__combined_54.4k.parquet
    online_eval/{domain}__{source}_{size}.parquet    held-out evaluation per domain
    offline_eval/...                                 (not read here)

Domains: math, codegen, logic, simulation, table, stem. A record::

    {"data_source": "logic__zebra_puzzle_dataset", "prompt": [{"role": "user", "content": "..."}],
     "ability": "logical_reasoning", "reward_model": {"style": "rule", "ground_truth": ...},
     "extra_info": {...}, "qwen2.5_7b_pass_rate": 0.62, "qwen3_30b_pass_rate": 0.81}

``data_source`` is what the verifier dispatches on (``plugins.rewards.guru.domain_of``) and
is not always ``{domain}__{file source}``: Reasoning360's WebInstruct rows (``stem__web``
file) say ``stem_web`` and carry no ``reward_model.style``; the ARC files
(``logic__arcagi1/2``, ``logic__barc``) may say ``simulation__arcagi1`` / ``simulation__barc``;
the puzzle files say ``logic__zebra_puzzle_dataset`` and the like. A row is valid when its
``data_source`` belongs to its file's domain; ``extra_info["source"]`` is the file's source.
For CodeIO input predictions the loader keeps the prompt's reference code and given output
in ``extra_info["codeio"]``, so the verifier can accept any input that produces it.

The compressed variant (``LLM360/guru-RL-92k-extra-info-compressed``) keeps one schema across
files by storing ``extra_info`` / ``reward_model`` as strings: plain JSON, or JSON that is
zlib- or gzip-compressed and base64-encoded. Both are decoded here (we could not download the
variant to confirm which of these it uses, so all three are accepted).

What ``load`` does, in order:

1. resolve ``path``: a local folder, else a hub id fetched with ``huggingface_hub``'s
   ``snapshot_download`` (only the selected domains' files). Each file is read on its own
   with pyarrow, because Guru's ``extra_info`` struct differs between files and one
   ``datasets.load_dataset`` over all of them fails on the schema;
2. validate every row: a bad row is reported with its file, row number, field and what was
   expected; the load fails listing them, unless ``skip_bad_rows`` is set, which counts and
   skips them;
3. grade difficulty from the pass-rate columns (``core.grading``; level 0 = ungraded, graded
   later by the base policy when the trainer asks);
4. select domains (``domains``) and sources (``sources``; ``zebra_puzzle`` or
   ``logic__zebra_puzzle``), keep the requested difficulty levels (ungraded records are kept),
   and subsample ``n`` records stratified by (domain, level) with the seed.

The eval split is ``online_eval/``; a selected domain with no online-eval file gets a held-out
slice of its train file instead (a hash of the prompt decides, 10%), removed from train.
"""
from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import random
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from core.errors import UserError
from core.grading import UNGRADED, difficulty_level
from core.hookspecs import hookimpl
from core.specs import DatasetSpec
from plugins.rewards.guru import DATA_SOURCE_PREFIXES, codeio_task, domain_of

HUB_ID = "LLM360/guru-RL-92k"
DOMAINS = ("math", "codegen", "logic", "simulation", "table", "stem")
SPLITS = ("train", "eval")
FOLDERS = {"train": "train", "eval": "online_eval"}
PASS_RATE_COLUMNS = ("qwen2.5_7b_pass_rate", "qwen3_30b_pass_rate")
FILE_RE = re.compile(r"^(?P<domain>[a-z]+)__(?P<source>.+?)(?:_(?P<size>\d+(?:\.\d+)?k?))?\.parquet$")
HOLDOUT_FRACTION = 0.10
MAX_REPORTED = 20


class GuruDataError(UserError, ValueError):
    """Bad files or rows; the message names each file, row and field."""


# --- files -----------------------------------------------------------------------------------
def resolve(path: str | None, domains: Sequence[str]) -> Path:
    """A local folder as is; a hub id downloaded (selected domains only) and cached."""
    target = path or HUB_ID
    local = Path(target).expanduser()
    if local.is_dir():
        return local.resolve()
    if re.fullmatch(r"[\w.-]+/[\w.-]+", target) and not local.exists():
        from huggingface_hub import snapshot_download
        patterns = [f"{folder}/{d}__*.parquet" for folder in FOLDERS.values() for d in domains]
        return Path(snapshot_download(repo_id=target, repo_type="dataset", allow_patterns=patterns))
    raise GuruDataError(f"data.path {target!r} is neither a folder nor a hub dataset id "
                        f"(like {HUB_ID})")


def data_files(root: Path, folder: str, domains: Sequence[str],
               sources: Sequence[str] = ()) -> list[tuple[Path, str, str]]:
    """(file, domain, source) for the selected domains and sources in ``root/folder``."""
    out = []
    for f in sorted((root / folder).glob("*.parquet")):
        m = FILE_RE.match(f.name)
        if not m or m["domain"] not in DOMAINS:
            raise GuruDataError(f"{f}: file name does not follow {{domain}}__{{source}}_{{size}}.parquet "
                                f"with domain one of {', '.join(DOMAINS)}")
        if m["domain"] in domains and (not sources or m["source"] in sources
                                       or f"{m['domain']}__{m['source']}" in sources):
            out.append((f, m["domain"], m["source"]))
    return out


# --- rows ----------------------------------------------------------------------------------------
def decode_field(value):
    """A struct as is; a JSON string (optionally zlib/gzip-compressed and base64-encoded)."""
    if not isinstance(value, (str, bytes)):
        return value
    text = value.decode() if isinstance(value, bytes) else value
    try:
        return json.loads(text)
    except ValueError:
        pass
    raw = base64.b64decode(text, validate=True)
    for unpack in (zlib.decompress, gzip.decompress):
        try:
            return json.loads(unpack(raw))
        except (zlib.error, OSError, ValueError):
            continue
    raise ValueError("not JSON, nor base64 of zlib/gzip-compressed JSON")


def _row_domain(data_source) -> str | None:
    try:
        return domain_of(data_source) if isinstance(data_source, str) else None
    except ValueError:
        return None


def _check_row(row: dict, domain: str, source: str | None = None) -> tuple[dict | None, list[str]]:
    """The cleaned record, or None and the problems (field: expected ..., got ...)."""
    errs: list[str] = []

    def bad(field: str, expected: str, got) -> None:
        errs.append(f"field {field}: expected {expected}, got {str(got)[:60]!r}")

    ds = row.get("data_source")
    if _row_domain(ds) != domain:
        bad("data_source", f"a data source the {domain} verifier scores ('{domain}__...'"
            + (", 'stem_web'" if domain == "stem" else ", 'simulation__arcagi1'" if domain == "logic" else "")
            + ")", ds)
    prompt = row.get("prompt")
    if (not isinstance(prompt, list) or not prompt or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            and m["content"] for m in prompt)):
        bad("prompt", "a non-empty list of {role, content} messages", prompt)
    if not isinstance(row.get("ability"), str):
        bad("ability", "a string", row.get("ability"))
    fields = {}
    for name in ("reward_model", "extra_info"):
        try:
            fields[name] = decode_field(row.get(name))
        except ValueError as exc:
            bad(name, f"a struct or a (compressed) JSON string ({exc})", row.get(name))
            fields[name] = None
    rm = fields["reward_model"]
    if rm is None:
        if row.get("reward_model") is None:
            bad("reward_model", "a struct {style, ground_truth}", None)
    elif not isinstance(rm, dict) or rm.get("ground_truth") in (None, ""):
        bad("reward_model.ground_truth", "a non-empty value",
            rm.get("ground_truth") if isinstance(rm, dict) else rm)
    elif rm.get("style") is not None and not isinstance(rm.get("style"), str):
        bad("reward_model.style", "a string such as 'rule' (or no style)", rm.get("style"))
    extra = fields["extra_info"]
    if extra is None:
        extra = {}
    elif not isinstance(extra, dict):
        bad("extra_info", "a struct (mapping)", extra)
        extra = {}
    rates = {}
    for col in PASS_RATE_COLUMNS:
        v = row[col] if row.get(col) is not None else extra.get(col)
        if v is not None:
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                bad(col, "a number in [0, 1] or null", v)
            else:
                rates[col] = float(v)
    if errs:
        return None, errs
    rate = next((rates[c] for c in PASS_RATE_COLUMNS if c in rates), None)
    extra = dict(extra)
    if domain == "simulation" and "codeio" not in extra:     # lets the verifier check any feasible input
        task = codeio_task(prompt[0]["content"])
        if task:
            extra["codeio"] = task
    extra.update(domain=domain, source=source or ds.split("__", 1)[-1], pass_rate=rate,
                 pass_rate_source=next((c for c in PASS_RATE_COLUMNS if c in rates), None),
                 difficulty=difficulty_level(rate))
    return {"data_source": ds, "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
            "ability": row["ability"], "reward_model": {"style": rm.get("style") or "rule",
                                                        "ground_truth": rm["ground_truth"]},
            "extra_info": extra}, []


def read_file(path: Path, domain: str, source: str | None = None) -> tuple[list[dict], list[str]]:
    """Valid records and one message per bad row (file, row, field, expectation)."""
    import pyarrow.parquet as pq
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:
        raise GuruDataError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
    records, problems = [], []
    for i, row in enumerate(rows):
        rec, errs = _check_row(row, domain, source)
        if rec is None:
            problems += [f"{path.name}: row {i}: {e}" for e in errs]
        else:
            rec["extra_info"]["row"] = i
            records.append(rec)
    return records, problems


def _held_out(record: dict) -> bool:
    h = hashlib.sha1(json.dumps(record["prompt"], sort_keys=True).encode()).digest()
    return int.from_bytes(h[:4], "big") / 2**32 < HOLDOUT_FRACTION


@functools.lru_cache(maxsize=8)
def _pools(root: str, domains: tuple[str, ...], sources: tuple[str, ...],
           skip_bad_rows: bool) -> tuple[dict[str, list[dict]], int]:
    """Train and eval pools for a selection, and how many bad rows were skipped."""
    rootp = Path(root)
    problems: list[str] = []
    pools: dict[str, list[dict]] = {"train": [], "eval": []}
    eval_domains = set()
    for split, folder in FOLDERS.items():
        for f, domain, source in data_files(rootp, folder, domains, sources):
            recs, bad = read_file(f, domain, source)
            problems += bad
            for r in recs:
                r["extra_info"]["split"] = split
            pools[split] += recs
            if split == "eval" and recs:
                eval_domains.add(domain)
    if not pools["train"] and not pools["eval"]:
        raise GuruDataError(f"{root}: no parquet files for domains {list(domains)}"
                            + (f" and sources {list(sources)}" if sources else "")
                            + f" under {', '.join(FOLDERS.values())}/")
    if problems and not skip_bad_rows:
        shown = "\n  ".join(problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise GuruDataError(f"{len(problems)} bad row(s) in {root} (set data.skip_bad_rows=true "
                            f"to count and skip them):\n  {shown}{more}")
    train = []
    for r in pools["train"]:       # domains without online_eval: hold a slice of train out
        if r["extra_info"]["domain"] not in eval_domains and _held_out(r):
            r["extra_info"]["split"] = "eval"
            pools["eval"].append(r)
        else:
            train.append(r)
    pools["train"] = train
    return pools, len(problems)


# --- selection -------------------------------------------------------------------------------------
def stratified_sample(records: list[dict], n: int, seed: int, balance_domains: bool = False) -> list[dict]:
    """``n`` records with each (domain, level) cell represented in proportion to its size
    (largest remainder), seeded; order shuffled. ``balance_domains``: every domain gets the
    same share (levels within a domain still in proportion), so a small domain's pass@k is
    measured on as many prompts as a large one's."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        cells[r["extra_info"]["domain"], r["extra_info"]["difficulty"]].append(r)
    keys = sorted(cells)
    total = len(records)
    if balance_domains:
        per_domain = defaultdict(int)
        for d, lv in keys:
            per_domain[d] += len(cells[d, lv])
        share = 1 / len(per_domain)
        exact = {k: n * share * len(cells[k]) / per_domain[k[0]] for k in keys}
    else:
        exact = {k: n * len(cells[k]) / total for k in keys}
    quota = {k: min(int(exact[k]), len(cells[k])) for k in keys}
    for k in sorted(keys, key=lambda k: (-(exact[k] - quota[k]), k)):
        if sum(quota.values()) >= n:
            break
        if quota[k] < len(cells[k]):
            quota[k] += 1
    if sum(quota.values()) < n:
        raise ValueError(f"{n} records requested with balanced domains, but a domain is too "
                         f"small to give {n // len({d for d, _ in keys})} of them")
    rng = random.Random(seed)
    out = [r for k in keys for r in rng.sample(cells[k], quota[k])]
    rng.shuffle(out)
    return out


def load(split: str, n: int, domains: Sequence[str] = DOMAINS, difficulties: Sequence[int] = (1, 2, 3, 4),
         seed: int = 0, path: str | None = None, sources: Sequence[str] = (),
         skip_bad_rows: bool = False, balance_eval: bool = False) -> list[dict]:
    """Dataset-plugin factory: ``n`` records of ``split`` for the selection (copies);
    ``balance_eval`` draws the eval split equally from every domain."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: allowed {', '.join(SPLITS)}")
    bad = [d for d in domains if d not in DOMAINS]
    if bad:
        raise ValueError(f"unknown Guru domain {bad[0]!r}; allowed: {', '.join(DOMAINS)}")
    root = resolve(path, domains)
    pools, _ = _pools(str(root), tuple(domains), tuple(sources), bool(skip_bad_rows))
    keep = [r for r in pools[split]
            if r["extra_info"]["difficulty"] in difficulties or r["extra_info"]["difficulty"] == UNGRADED]
    if n > len(keep):
        raise ValueError(f"{n} {split} records requested, but the selection (domains {list(domains)}, "
                         f"levels {list(difficulties)}{', sources ' + str(list(sources)) if sources else ''}) "
                         f"holds {len(keep)} in {root}")
    picked = stratified_sample(keep, n, seed, balance_domains=balance_eval and split == "eval")
    return json.loads(json.dumps(picked))   # callers may mutate


def bad_row_count(path: str | None, domains: Sequence[str], sources: Sequence[str] = ()) -> int:
    """How many rows a ``skip_bad_rows`` load skipped (for logging)."""
    return _pools(str(resolve(path, domains)), tuple(domains), tuple(sources), True)[1]


@hookimpl
def agentic_rl_datasets():
    yield DatasetSpec(
        name="guru", factory=load, domains=DOMAINS, splits=SPLITS,
        options=("path", "sources", "skip_bad_rows", "balance_eval"), worked_examples=False,
        data_sources=DATA_SOURCE_PREFIXES,
        description="Guru-RL-92k (LLM360): math, codegen, logic, simulation, table, stem; hub id or folder")
