"""Reward models on Ray Serve: one application per RM size class.

HTTP (``route_prefix="/rm/<size>"``)::

    POST /rm/<size>/score   {"items": [{"prompt": "...", "response": "..."}, ...]}
         -> {"scores": [...], "model_id": "..."}      scores in the order of the items
    GET  /rm/<size>/healthz -> {"status": "ok", "size": ..., "loaded": [...], "limits": {...}}

The checkpoint is chosen per request with the header ``serve_multiplexed_model_id`` (Serve's
multiplexing routes it to a replica that has it loaded; each replica keeps at most 3); without
the header the app's ``default_model_id`` is used. A model id names a folder under
``checkpoint_root`` (an RM saved by ``serve.rm_model``): 1 to 128 letters, digits, ``.``, ``_``
or ``-``, starting with a letter or digit, so no path can escape the root. A hub id or an
absolute path is a model id only when listed verbatim in ``allowed_ids``.

A ``POST /score`` is checked in this order, each check before any work of the next (the
body is not read until the headers pass); every refusal is JSON
``{"detail": "<field>: <message>; ...", "errors": [{"field": ..., "message": ...}, ...]}``:

1. 401 ``authorization`` (with ``token`` set): no ``Authorization`` header, or one other than
   exactly ``Bearer <token>`` (the scheme is case-insensitive, as RFC 7235 says; a bare
   token, another scheme or extra spaces are refused). So a malformed body without the
   token is 401, not 422.
2. 422 ``model_id``: no model id (no header and no ``default_model_id``); a model id over 128
   characters, or with characters other than letters, digits, ``.``, ``_``, ``-`` (``/``,
   ``..``, spaces ...). 404 ``model_id``: a well-formed id with no checkpoint under
   ``checkpoint_root``.
3. 413 ``body``: more than ``max_body_bytes`` (``Content-Length``, or counted as it streams).
4. 422 ``body``: not UTF-8, not JSON. 413 ``body.items``: more than ``max_items`` items
   (counted before they are validated). 422 for a malformed body, with pydantic's message
   for the field (``body.items.0.response: Field required``; no items).
5. 413 ``body.items.<i>.prompt`` / ``.response``: a text longer than ``max_prompt_chars`` /
   ``max_response_chars``; the message names the limit and its value. Checked before any
   tokenisation.
6. 422 ``body.items.<i>.prompt`` / ``.response``: text a tokenizer cannot take, such as an
   unpaired surrogate (JSON ``"\\ud800"``); checked before the request joins a batch. If a
   batch fails anyway, its requests are scored one by one and only the failing ones get
   an error (422 naming the field the tokenizer refuses, else 500): a bad request never
   fails the requests it was batched with.

Limits (``RMAppArgs``; ``GET /healthz`` shows them):

- ``max_body_bytes`` (32 MiB): the JSON body.
- ``max_items`` (4096, ``MAX_ITEMS``): items per request.
- ``max_prompt_chars`` / ``max_response_chars`` (None: ``CHARS_PER_TOKEN`` = 4 times the
  checkpoint's context length, the ``max_position_embeddings`` of its config, or 32,768
  tokens if it names none). BPE tokenizers average about four characters a token and the
  tiny ladder's character tokenizer one, so a text that fits the context passes, while one
  item costs at most a few contexts' worth of compute: 256 characters for the tiny ladder's
  64 positions (a 2 MB string used to hold a replica for 50 s), 524,288 for the 131,072 of
  R1-Distill-Qwen. A number overrides it.
- ``max_forward_chars`` (262,144): padded characters per forward pass. The items of a batch
  are sorted by length and grouped so that ``group size x longest item <= max_forward_chars``
  (an item longer than that goes alone): a short item is never padded to a long one's length
  and memory per forward stays bounded whatever the mix.

The same scoring through a ``DeploymentHandle`` (same checks; a refusal raises
``Rejected``, an ``HTTPException`` with ``status_code``, ``detail`` and ``errors``)::

    handle = serve.get_app_handle("rm_xs")
    scores = await handle.options(multiplexed_model_id=key).score_items.remote(items)

Batching and isolation. Requests are batched across callers with ``@serve.batch``
(``max_batch_size`` counts items, not requests); a request with more items than that is
split into chunks of ``max_batch_size`` items, at most ``CHUNKS_IN_FLIGHT`` (2) of a request
queued at a time, so another caller's request waits for at most two of a big request's
batches, not for all of them; the scores come back in order. Forward passes run in one worker
thread, off the replica's event loop, so health checks, ``/healthz`` and the checks above
answer while a batch is scored. If a batch fails (a tokenizer error that got past the checks,
say), each request in it is scored alone, and only the ones that still fail get an error.
"""
import asyncio
import hmac
import json
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from ray import serve

MAX_ITEMS = 4096                  # default max_items
MAX_BODY_BYTES = 32 * 2 ** 20     # default max_body_bytes
MAX_FORWARD_CHARS = 2 ** 18       # default max_forward_chars
CHARS_PER_TOKEN = 4               # derived text limits: this many characters per context token
FALLBACK_CONTEXT = 32768          # tokens, for a checkpoint whose config names no context length
MAX_MODEL_ID_CHARS = 128
CHUNKS_IN_FLIGHT = 2              # chunks of one request queued for batching at a time
PARSE_INLINE_BYTES = 64 * 1024    # larger bodies are parsed in a thread, off the event loop
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Item(BaseModel):
    prompt: str
    response: str


_ITEMS = TypeAdapter(list[Item])


class ScoreRequest(BaseModel):
    items: list[Item] = Field(min_length=1)


class ScoreResponse(BaseModel):
    scores: list[float]
    model_id: str


class RMAppArgs(BaseModel):
    """Typed arguments of one size class's app (``serve run serve.app:build_app size=xs ...``).
    The limits are described in the module docstring."""
    size: str
    checkpoint_root: str
    default_model_id: str | None = None
    allowed_ids: list[str] = []
    token: str | None = None
    max_batch_size: int = Field(64, ge=1)
    batch_wait_timeout_s: float = Field(0.005, ge=0)
    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    threads: int = Field(1, ge=1)
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1)
    max_items: int = Field(MAX_ITEMS, ge=1)
    max_prompt_chars: int | None = Field(None, ge=1)     # None: CHARS_PER_TOKEN x context
    max_response_chars: int | None = Field(None, ge=1)   # None: CHARS_PER_TOKEN x context
    max_forward_chars: int = Field(MAX_FORWARD_CHARS, ge=1)


class Rejected(HTTPException):
    """A request refused with a status and the fields at fault (HTTP: JSON ``detail`` and
    ``errors``; through a handle this exception is raised)."""

    def __init__(self, status_code: int, errors: tuple[str, str] | list[tuple[str, str]],
                 headers: dict[str, str] | None = None) -> None:
        self.errors = [tuple(errors)] if isinstance(errors, tuple) else [tuple(e) for e in errors]
        super().__init__(status_code, "; ".join(f"{f}: {m}" for f, m in self.errors), headers)

    def __reduce__(self):
        return Rejected, (self.status_code, self.errors, self.headers)

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.detail}"

    def content(self) -> dict:
        return {"detail": self.detail, "errors": [{"field": f, "message": m} for f, m in self.errors]}


api = FastAPI(title="agentic-rl-scaling reward models")


@api.exception_handler(RequestValidationError)
async def _named_field_error(request: Request, exc: RequestValidationError):
    errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
    text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": f"malformed request: {text}", "errors": errors})


@api.exception_handler(Rejected)
async def _rejected(request: Request, exc: Rejected):
    return JSONResponse(status_code=exc.status_code, content=exc.content(), headers=exc.headers)


# --- request checks (pure functions: no model, no Serve) ------------------------------------------
def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _too_many(where: str, n: int, max_items: int) -> Rejected:
    return Rejected(413, (where, f"{n} items, more than max_items={max_items} per request; "
                                 "send them in several requests"))


def check_model_id(model_id: str, allowed_ids: list[str] = ()) -> None:
    """422 unless ``model_id`` is in ``allowed_ids`` or a plain folder name."""
    if model_id in allowed_ids:
        return
    if len(model_id) > MAX_MODEL_ID_CHARS:
        raise Rejected(422, ("model_id", f"{len(model_id)} characters (starting {_short(model_id)}), "
                                         f"more than the {MAX_MODEL_ID_CHARS} a model id may have"))
    if not _MODEL_ID.fullmatch(model_id):
        raise Rejected(422, ("model_id", f"{_short(model_id)} is not a checkpoint name: use letters, "
                                         "digits, '.', '_' and '-', starting with a letter or digit "
                                         "(a hub id or a path must be listed in the app's allowed_ids)"))


def parse_body(raw: bytes, max_items: int) -> Any:
    """The JSON body, its ``items`` counted before they are validated one by one."""
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise Rejected(422, ("body", f"not UTF-8: {exc}")) from None
    except (ValueError, RecursionError) as exc:
        raise Rejected(422, ("body", f"not valid JSON: {str(exc)[:200]}")) from None
    if isinstance(obj, dict) and isinstance(obj.get("items"), list) and len(obj["items"]) > max_items:
        raise _too_many("body.items", len(obj["items"]), max_items)
    try:
        return [it.model_dump() for it in ScoreRequest.model_validate(obj).items]
    except ValidationError as exc:
        errors = [("body." + ".".join(str(p) for p in e["loc"]) if e["loc"] else "body", e["msg"])
                  for e in exc.errors()]
        raise Rejected(422, errors[:20]) from None


def check_items(items: list[dict], max_items: int, max_chars: dict[str, int], where: str = "items",
                model_id: str = "") -> None:
    """413 for too many items or a text over its limit, then 422 for text no tokenizer takes
    (unpaired surrogates); ``where`` prefixes field names (``body.items`` over HTTP)."""
    if len(items) > max_items:
        raise _too_many(where, len(items), max_items)
    if not items:
        raise Rejected(422, (where, "no items"))
    too_long, bad = [], []
    for i, it in enumerate(items):
        for field in ("prompt", "response"):
            text, limit = it[field], max_chars[field]
            if len(text) > limit:
                too_long.append((f"{where}.{i}.{field}", f"{len(text)} characters, more than "
                                 f"max_{field}_chars={limit}{' for model ' + model_id if model_id else ''}"))
    if too_long:
        raise Rejected(413, too_long[:20])
    for i, it in enumerate(items):
        for field in ("prompt", "response"):
            try:
                it[field].encode("utf-8")
            except UnicodeEncodeError as exc:
                bad.append((f"{where}.{i}.{field}", f"not valid Unicode text: unpaired surrogate "
                            f"{it[field][exc.start]!r} at character {exc.start}; send UTF-8 text"))
    if bad:
        raise Rejected(422, bad[:20])


def micro_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices grouped for forward passes: sorted by length, each group's size x its longest
    length at most ``budget`` (a longer item alone)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups and (len(groups[-1]) + 1) * max(lengths[i], 1) <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def tokenizer_error(tok, items: list[dict], where: str, offset: int) -> Rejected | None:
    """The first field of ``items`` the tokenizer refuses, as a 422 (None if it takes them all)."""
    for j, it in enumerate(items):
        for field in ("prompt", "response"):
            try:
                tok(it[field], add_special_tokens=False)
            except Exception as exc:    # noqa: BLE001 - any tokenizer failure names the field
                return Rejected(422, (f"{where}.{offset + j}.{field}",
                                      f"the tokenizer cannot take this text ({type(exc).__name__}: {str(exc)[:200]})"))
    return None


def _result(value):
    """A chunk's scores, or raise the error that request got."""
    if isinstance(value, BaseException):
        raise value
    return value


async def score_isolating(run, tok, requests: list[tuple[list[dict], str, int]]) -> list[list[float] | Exception]:
    """Scores of each request ``(items, where, offset)`` with one ``await run(items)``; if that
    fails, each request is scored alone and those that still fail get their own exception
    (a 422 naming the field the tokenizer refuses, else a RuntimeError), so one bad request
    cannot fail the others."""
    try:
        scores = await run([it for items, _, _ in requests for it in items])
    except Exception:                   # noqa: BLE001 - find the requests at fault
        out: list[list[float] | Exception] = []
        for items, where, offset in requests:
            try:
                out.append(await run(items))
            except Exception as exc:    # noqa: BLE001
                out.append(tokenizer_error(tok, items, where, offset)
                           or RuntimeError(f"scoring failed: {type(exc).__name__}: {exc}"))
        return out
    out, pos = [], 0
    for items, _, _ in requests:
        out.append(scores[pos:pos + len(items)])
        pos += len(items)
    return out


def _context_of(config: dict) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    return FALLBACK_CONTEXT


# --- the deployment -----------------------------------------------------------------------------
@serve.deployment(max_ongoing_requests=256, health_check_period_s=5, health_check_timeout_s=10)
@serve.ingress(api)
class RewardModel:
    def __init__(self, args: dict) -> None:
        import torch
        self.args = RMAppArgs(**args)
        torch.set_num_threads(self.args.threads)
        # forward passes in one thread of their own: the event loop stays free for health
        # checks and for refusing bad requests while a batch is scored
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rm-forward",
                                       initializer=torch.set_num_threads, initargs=(self.args.threads,))
        self.root = Path(self.args.checkpoint_root).resolve()
        self.score_batch.set_max_batch_size(self.args.max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        self.loaded: dict[str, Any] = {}
        self.contexts: dict[str, int] = {}
        if self.args.default_model_id:       # fail at start-up, not on the first request
            self._path_of(self.args.default_model_id)

    # --- checkpoints -------------------------------------------------------------------------
    def _path_of(self, model_id: str) -> str:
        check_model_id(model_id, self.args.allowed_ids)
        if model_id in self.args.allowed_ids:
            return model_id
        path = self.root / model_id
        if not (path / "config.json").is_file():
            raise Rejected(404, ("model_id", f"no checkpoint {model_id!r} under the checkpoint_root "
                                             f"of the {self.args.size!r} app, and not in its allowed_ids"))
        return str(path)

    @serve.multiplexed(max_num_models_per_replica=3)
    async def get_model(self, model_id: str):
        from serve.rm_model import load_rm
        path = self._path_of(model_id)
        model = await asyncio.get_running_loop().run_in_executor(None, load_rm, path)
        self.loaded[model_id] = True
        return model

    async def _max_chars(self, model_id: str) -> dict[str, int]:
        """Characters per prompt / response for this checkpoint (configured, or from its context)."""
        limits = {"prompt": self.args.max_prompt_chars, "response": self.args.max_response_chars}
        if None in limits.values():
            if model_id not in self.contexts:
                config = Path(self._path_of(model_id)) / "config.json"
                if config.is_file():
                    ctx = _context_of(json.loads(config.read_text()))
                else:                    # a hub id in allowed_ids: ask the loaded model
                    model, _ = await self.get_model(model_id)
                    ctx = _context_of(model.config.to_dict())
                self.contexts[model_id] = ctx
            limits = {k: v if v is not None else CHARS_PER_TOKEN * self.contexts[model_id]
                      for k, v in limits.items()}
        return limits

    # --- scoring ---------------------------------------------------------------------------------
    def _forward(self, model, tok, items: list[dict]) -> list[float]:
        from serve.rm_model import rewards
        out: list[float] = [0.0] * len(items)
        lengths = [len(it["prompt"]) + len(it["response"]) for it in items]
        for group in micro_batches(lengths, self.args.max_forward_chars):
            scores = rewards(model, tok, [items[i]["prompt"] for i in group],
                             [items[i]["response"] for i in group], batch=len(group))
            for i, s in zip(group, scores):
                out[i] = s
        return out

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=lambda reqs: sum(len(r[1]) for r in reqs))
    async def score_batch(self, requests: list[tuple[str, list[dict], str, int]]) -> list[list[float] | Exception]:
        """Scores for each request ``(model_id, items, where, offset)`` of the batch, or the
        exception that request alone gets; ``where`` and ``offset`` name its fields."""
        loop = asyncio.get_running_loop()
        out: list[list[float] | Exception | None] = [None] * len(requests)
        for model_id in dict.fromkeys(r[0] for r in requests):
            idx = [i for i, r in enumerate(requests) if r[0] == model_id]
            model, tok = await self.get_model(model_id)

            def run(items, model=model, tok=tok):
                return loop.run_in_executor(self.pool, self._forward, model, tok, items)
            for i, res in zip(idx, await score_isolating(run, tok, [requests[i][1:] for i in idx])):
                out[i] = res
        return out

    async def _score(self, model_id: str, items: list[dict], where: str) -> list[float]:
        """Scores in order: chunks of at most ``max_batch_size`` items, ``CHUNKS_IN_FLIGHT``
        of them queued for batching at a time."""
        n = self.args.max_batch_size
        out: list[float] = []
        inflight: deque[asyncio.Future] = deque()
        try:
            for start in range(0, len(items), n):
                inflight.append(asyncio.ensure_future(
                    self.score_batch((model_id, items[start:start + n], where, start))))
                if len(inflight) >= CHUNKS_IN_FLIGHT:
                    out += _result(await inflight.popleft())
            while inflight:
                out += _result(await inflight.popleft())
        finally:
            for f in inflight:
                f.cancel()
        return out

    def _model_id(self) -> str:
        """This request's checkpoint, checked here so that a bad id fails its own request
        and never the batch it would have joined."""
        model_id = serve.get_multiplexed_model_id() or self.args.default_model_id
        if not model_id:
            raise Rejected(422, ("model_id", "no model id: set the header serve_multiplexed_model_id "
                                             "(or give the app a default_model_id)"))
        self._path_of(model_id)
        return model_id

    async def score_items(self, items: list[dict]) -> list[float]:
        """Handle API: scores for ``[{"prompt", "response"}, ...]`` with the request's model id."""
        model_id = self._model_id()
        if not isinstance(items, list):
            raise Rejected(422, ("items", "a list of {prompt, response} is expected"))
        if len(items) > self.args.max_items:     # counted before the items are validated
            raise _too_many("items", len(items), self.args.max_items)
        try:
            items = [it.model_dump() for it in _ITEMS.validate_python(items)]
        except ValidationError as exc:
            raise Rejected(422, [(".".join(["items", *map(str, e["loc"])]), e["msg"])
                                 for e in exc.errors()][:20]) from None
        check_items(items, self.args.max_items, await self._max_chars(model_id), "items", model_id)
        return await self._score(model_id, items, "items")

    def _authorise(self, authorization: str | None) -> None:
        if self.args.token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        ok = (authorization is not None and scheme.lower() == "bearer"
              and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                      self.args.token.encode("utf-8", "surrogateescape")))
        if not ok:
            raise Rejected(401, ("authorization", "missing or wrong bearer token: send the header "
                                                  "'Authorization: Bearer <token>'"),
                           headers={"WWW-Authenticate": "Bearer"})

    async def _read_body(self, request: Request) -> bytes:
        limit = self.args.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            raise Rejected(413, ("body", f"{int(length)} bytes, more than max_body_bytes={limit}"))
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise Rejected(413, ("body", f"more than max_body_bytes={limit} bytes"))
            parts.append(part)
        return b"".join(parts)

    def _parse(self, raw: bytes, max_chars: dict[str, int], model_id: str) -> list[dict]:
        items = parse_body(raw, self.args.max_items)
        check_items(items, self.args.max_items, max_chars, "body.items", model_id)
        return items

    @api.post("/score", response_model=ScoreResponse, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["items"], "properties": {"items": {
                "type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["prompt", "response"],
                    "properties": {"prompt": {"type": "string"}, "response": {"type": "string"}}}}}}}}}})
    async def score(self, request: Request) -> ScoreResponse:
        # headers first (token, model id), then the body: nothing is read for a refused caller
        self._authorise(request.headers.get("authorization"))
        model_id = self._model_id()
        max_chars = await self._max_chars(model_id)
        raw = await self._read_body(request)
        if len(raw) <= PARSE_INLINE_BYTES:
            items = self._parse(raw, max_chars, model_id)
        else:
            items = await asyncio.get_running_loop().run_in_executor(None, self._parse, raw, max_chars, model_id)
        scores = await self._score(model_id, items, "body.items")
        return ScoreResponse(scores=scores, model_id=model_id)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        # `loaded`: checkpoints this replica has loaded since it started (up to 3 stay cached)
        limits = {k: getattr(self.args, k) for k in ("max_body_bytes", "max_items", "max_prompt_chars",
                                                    "max_response_chars", "max_forward_chars", "max_batch_size")}
        return {"status": "ok", "size": self.args.size, "loaded": sorted(self.loaded), "pid": os.getpid(),
                "limits": limits}

    def check_health(self) -> None:
        """Serve's periodic health check: the checkpoint root must stay readable."""
        if not self.root.is_dir():
            raise RuntimeError(f"checkpoint root {self.root} is gone")


def build_app(args: RMAppArgs | dict) -> serve.Application:
    """The application for one RM size class (typed args; also the ``serve run`` entry)."""
    args = args if isinstance(args, RMAppArgs) else RMAppArgs(**args)
    return RewardModel.options(
        name=f"RewardModel_{args.size}", num_replicas=args.num_replicas,
        ray_actor_options={"num_cpus": args.num_cpus, "num_gpus": args.num_gpus},
    ).bind(args.model_dump())


def app_name(size: str) -> str:
    return f"rm_{size}"


def route(size: str) -> str:
    return f"/rm/{size}"


def deploy(args: RMAppArgs, host: str = "127.0.0.1", port: int = 8000, blocking: bool = False) -> str:
    """Start Serve's HTTP proxy (if needed) and run the app; returns its score URL."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(args), name=app_name(args.size), route_prefix=route(args.size), blocking=blocking)
    return f"http://{host}:{port}{route(args.size)}/score"
