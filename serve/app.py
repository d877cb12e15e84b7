"""Reward models on Ray Serve: one application per RM size class.

HTTP (``route_prefix="/rm/<size>"``)::

    POST /rm/<size>/score   {"items": [{"prompt": "...", "response": "..."}, ...]}
         -> {"scores": [...], "model_id": "..."}      scores in the order of the items
    GET  /rm/<size>/healthz -> {"status": "ok", "size": ..., "loaded": [...]}

The checkpoint is chosen per request with the header ``serve_multiplexed_model_id`` (Serve's
multiplexing routes it to a replica that has it loaded; each replica keeps at most 3); without the header the app's ``default_model_id`` is used. A model
id names a folder under ``checkpoint_root`` (an RM saved by ``serve.rm_model``), or is a hub id
/ absolute path listed in ``allowed_ids``. With ``token`` set, requests need
``Authorization: Bearer <token>`` (401 otherwise); a malformed body gets 422 whose ``detail``
names the field.

The same scoring through a ``DeploymentHandle``::

    handle = serve.get_app_handle("rm_xs")
    scores = await handle.options(multiplexed_model_id=key).score_items.remote(items)

Requests are batched across callers with ``@serve.batch`` (``max_batch_size`` counts items,
not requests); a batch may mix checkpoints and is scored one forward per checkpoint.
"""
import asyncio
import hmac
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve

MAX_ITEMS = 4096


class Item(BaseModel):
    prompt: str
    response: str


class ScoreRequest(BaseModel):
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS)


class ScoreResponse(BaseModel):
    scores: list[float]
    model_id: str


class RMAppArgs(BaseModel):
    """Typed arguments of one size class's app (``serve run serve.app:build_app size=xs ...``)."""
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


api = FastAPI(title="agentic-rl-scaling reward models")


@api.exception_handler(RequestValidationError)
async def _named_field_error(request: Request, exc: RequestValidationError):
    errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
    text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": f"malformed request: {text}", "errors": errors})


@serve.deployment(max_ongoing_requests=256, health_check_period_s=5, health_check_timeout_s=10)
@serve.ingress(api)
class RewardModel:
    def __init__(self, args: dict) -> None:
        import torch
        self.args = RMAppArgs(**args)
        torch.set_num_threads(self.args.threads)
        self.root = Path(self.args.checkpoint_root).resolve()
        self.score_batch.set_max_batch_size(self.args.max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        self.loaded: dict[str, Any] = {}
        if self.args.default_model_id:       # fail at start-up, not on the first request
            self._path_of(self.args.default_model_id)

    # --- checkpoints -------------------------------------------------------------------------
    def _path_of(self, model_id: str) -> str:
        if model_id in self.args.allowed_ids:
            return model_id
        if "/" in model_id or model_id.startswith("."):
            raise HTTPException(404, f"model id {model_id!r} is neither a checkpoint under the "
                                     f"app's checkpoint_root nor in allowed_ids")
        path = self.root / model_id
        if not (path / "config.json").exists():
            raise HTTPException(404, f"no checkpoint {model_id!r} under {self.root}")
        return str(path)

    @serve.multiplexed(max_num_models_per_replica=3)
    async def get_model(self, model_id: str):
        from serve.rm_model import load_rm
        path = self._path_of(model_id)
        model = await asyncio.get_running_loop().run_in_executor(None, load_rm, path)
        self.loaded[model_id] = True
        return model

    # --- scoring ---------------------------------------------------------------------------------
    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=lambda reqs: sum(len(r[1]) for r in reqs))
    async def score_batch(self, requests: list[tuple[str, list[dict]]]) -> list[list[float]]:
        from serve.rm_model import rewards
        out: list[list[float] | None] = [None] * len(requests)
        for model_id in {m for m, _ in requests}:
            idx = [i for i, (m, _) in enumerate(requests) if m == model_id]
            model, tok = await self.get_model(model_id)
            items = [it for i in idx for it in requests[i][1]]
            scores = rewards(model, tok, [it["prompt"] for it in items], [it["response"] for it in items])
            pos = 0
            for i in idx:
                n = len(requests[i][1])
                out[i], pos = scores[pos:pos + n], pos + n
        return out

    def _model_id(self) -> str:
        """This request's checkpoint, checked here so that a bad id fails its own request
        and never the batch it would have joined."""
        model_id = serve.get_multiplexed_model_id() or self.args.default_model_id
        if not model_id:
            raise HTTPException(422, "no model id: set the header serve_multiplexed_model_id "
                                     "(or give the app a default_model_id)")
        self._path_of(model_id)
        return model_id

    async def score_items(self, items: list[dict]) -> list[float]:
        """Handle API: scores for ``[{"prompt", "response"}, ...]`` with the request's model id."""
        items = [Item(**it).model_dump() for it in items]
        return await self.score_batch((self._model_id(), items))

    def _authorise(self, authorization: str | None) -> None:
        if self.args.token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not authorization or not hmac.compare_digest(given, self.args.token):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @api.post("/score", response_model=ScoreResponse)
    async def score(self, body: ScoreRequest, authorization: str | None = Header(None)) -> ScoreResponse:
        self._authorise(authorization)
        model_id = self._model_id()
        scores = await self.score_batch((model_id, [it.model_dump() for it in body.items]))
        return ScoreResponse(scores=scores, model_id=model_id)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        # `loaded`: checkpoints this replica has loaded since it started (up to 3 stay cached)
        return {"status": "ok", "size": self.args.size, "loaded": sorted(self.loaded), "pid": os.getpid()}

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
