"""The HTTP service of ``llara-kit serve``: a FastAPI app in front of a loaded run.

The run loads on a thread once the server listens (``/health`` says ``loading`` until then);
requests are checked on the event loop, queued to one model thread (``Batcher``) and answered
with ``Recommender.answer``. Every error is ``{"error": "<one sentence>"}`` with its status."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.recommend import Answer, Recommendation, Recommender
from llara_kit.run_folder import has_metrics, load_metrics
from llara_kit.serving.batcher import Batcher, Busy
from llara_kit.serving.schema import (
    ErrorBody,
    Health,
    RecommendRequest,
    RecommendResponse,
    SearchHit,
)
from llara_kit.version import VERSION

LOADING_RETRY_S = 5  # Retry-After while the run loads


@dataclass
class ServeSettings:
    """How requests are queued and grouped (see ``Batcher``), and the largest body taken.
    The defaults group only requests already waiting: on 2 CPU cores that cost nothing at one
    client and raised throughput at 4 and 16 (docs/serving.md, "Measured")."""

    max_batch: int = 8
    max_wait_ms: float = 0.0
    max_queue: int = 64
    max_body_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise LlaraKitError(f"{name}={getattr(self, name)!r} must be at least 1.")
        if self.max_wait_ms < 0:
            raise LlaraKitError(f"max_wait_ms={self.max_wait_ms!r} must be at least 0.")


class NotReady(Exception):
    """The run is still loading (or failed to load)."""


class Service:
    """The run behind the server: loaded on a thread by ``start``, then served through a
    ``Batcher``. ``on_failure`` is called when loading fails (the server then stops)."""

    def __init__(self, run_dir: Path, settings: ServeSettings, device: str = "auto",
                 on_failure: Callable[[str], None] = lambda error: None,
                 on_ready: Callable[[Service], None] = lambda service: None):
        self.run_dir, self.settings, self.device = Path(run_dir), settings, device
        self.on_failure, self.on_ready = on_failure, on_ready
        self.status, self.error = "loading", None
        self.recommender: Recommender | None = None
        self.batcher: Batcher | None = None
        self.load_seconds: float | None = None

    def start(self) -> None:
        threading.Thread(target=self._load, name="llara-kit-load", daemon=True).start()

    def _load(self) -> None:
        start = time.perf_counter()
        try:
            recommender = Recommender.from_run(self.run_dir, device=self.device)
        except Exception as error:  # noqa: BLE001 - reported by /health and the CLI
            self.status = "failed"
            self.error = str(error) if isinstance(error, LlaraKitError) else (
                f"Loading {str(self.run_dir)!r} failed: {type(error).__name__}: {error}")
            self.on_failure(self.error)
            return
        s = self.settings
        self.batcher = Batcher(recommender.answer, s.max_batch, s.max_wait_ms / 1000,
                               s.max_queue)
        self.recommender, self.status = recommender, "ready"
        self.load_seconds = time.perf_counter() - start
        self.on_ready(self)

    def ready(self) -> Recommender:
        if self.recommender is None:
            raise NotReady(self.error or "The run is still loading; retry shortly.")
        return self.recommender

    def search(self, query: str, limit: int) -> list[SearchHit]:
        """Items whose title holds ``query`` (``Recommender.search``)."""
        rec = self.ready()
        data = rec.run.data
        return [SearchHit(item=data.raw_item_ids[i], title=data.titles[i],
                          new=bool(data.is_new[i])) for i in rec.search(query, limit)]

    def close(self) -> None:
        """Answer every queued request, then stop the model thread."""
        if self.batcher is not None:
            self.batcher.close()


def _items(recs: list[Recommendation]) -> list[dict]:
    return [{"rank": k, **asdict(r)} for k, r in enumerate(recs, 1)]


def _error(status: int, sentence: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": sentence}, status_code=status, headers=headers)


EXAMPLE = '{"history": ["Star Wars (1977)"], "top_k": 10}'


def validation_error(errors: list[dict]) -> tuple[int, str]:
    """The status and one sentence for pydantic's complaints about a request body (an unknown
    field first: it explains a missing one)."""
    first = sorted(errors, key=lambda e: e["type"] != "extra_forbidden")[0]
    path = [p for p in first["loc"][1:] if p not in ("str", "int")]  # union members: not paths
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    if first["type"] == "json_invalid":
        return 400, (f"The body is not valid JSON ({first.get('ctx', {}).get('error', '')} "
                     f"at character {first['loc'][-1]}); send an object such as {EXAMPLE}.")
    if not where:
        what = "empty" if first["type"] == "missing" else "not a JSON object"
        return 400, f"The body is {what}; send an object such as {EXAMPLE}."
    if first["type"] == "extra_forbidden":
        known = ", ".join(RecommendRequest.model_fields)
        return 422, f"Unknown field {where!r}; the fields are: {known}."
    if len(path) < len(first["loc"]) - 1:
        return 422, f"{where}: an item is its raw id or its title (a string or a number)."
    return 422, f"{where}: {first['msg'].rstrip('.')}."


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before the app
    reads it (declared length or streamed, whichever shows it first)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        response = _error(413, f"The body is over {self.limit:,} bytes; send a shorter history "
                          "or fewer candidates.")
        await response(scope, receive, send)


def create_app(service: Service) -> FastAPI:
    """The app serving ``service``: its lifespan starts the loading and drains the queue."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        await run_in_threadpool(service.close)

    errors = {code: {"model": ErrorBody} for code in (400, 413, 415, 422, 503)}
    app = FastAPI(title="llara-kit", version=VERSION, lifespan=lifespan,
                  description="Recommendations from a trained LLaRA run; the page is at /.")
    app.add_middleware(BodyLimit, limit=service.settings.max_body_bytes)

    @app.exception_handler(LlaraKitError)
    async def bad_request(request: Request, error: LlaraKitError):
        return _error(422, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        kind = request.headers.get("content-type", "")
        if request.method == "POST" and kind and "json" not in kind:
            return _error(415, f"The body is sent as {kind.split(';')[0]}; send it as JSON, "
                          "with the header Content-Type: application/json.")
        return _error(*validation_error(list(error.errors())))

    @app.exception_handler(Busy)
    async def busy(request: Request, error: Busy):
        return _error(503, str(error), error.retry_after)

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, error: NotReady):
        return _error(503, str(error), LOADING_RETRY_S)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        sentence = {404: f"No such endpoint: {request.method} {request.url.path}; see /docs.",
                    405: f"{request.method} is not allowed on {request.url.path}; see /docs."
                    }.get(error.status_code, str(error.detail))
        return _error(error.status_code, sentence)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception):
        return _error(500, f"Internal error ({type(error).__name__}: {error}); the server "
                      "goes on; please report it.")

    page_html = resources.files("llara_kit.serving").joinpath("page.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return page_html

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health():
        """``ready`` (200) once the run is loaded; ``loading`` or ``failed`` (503) before."""
        body = {"status": service.status, "error": service.error}
        if service.status == "ready":
            return body
        return JSONResponse(body, status_code=503, headers={
            "Retry-After": str(LOADING_RETRY_S)} if service.status == "loading" else None)

    @app.get("/info", responses=errors)
    async def info() -> dict:
        """The run: its data, components, recorded metrics and how it is served."""
        rec = service.ready()
        run, batcher = rec.run, service.batcher
        return {
            "run": run.path.name, "path": str(run.path.resolve()),
            "dataset": run.data.manifest["dataset"], "data_hash": run.data.hash,
            "encoder": run.config.encoder, "llm": run.config.llm,
            "items": run.data.n_items, "history_length": run.data.settings.history,
            "candidates": run.data.settings.candidates,
            "stage": rec.stage_of("auto"), "stage_reason": rec.stage,
            "metrics": load_metrics(run.path) if has_metrics(run.path) else None,
            "serving": asdict(service.settings) | {"load_seconds": service.load_seconds},
            "served": {"requests": batcher.jobs, "batches": batcher.batches,
                       "waiting": batcher.waiting},
        }

    @app.get("/items", response_model=list[SearchHit], responses=errors)
    async def items(query: str = Query(..., max_length=200, description="Part of a title."),
                    limit: int = Query(20, ge=1, le=100)):
        """Items whose title holds ``query``."""
        return service.search(query, limit)

    @app.post("/recommend", response_model=RecommendResponse, responses=errors)
    async def recommend(body: RecommendRequest):
        """The top K of the candidates (default: the encoder's shortlist) for a history."""
        rec = service.ready()
        query = rec.query([str(h) for h in body.history],
                          [str(c) for c in body.candidates] if body.candidates else None,
                          body.top_k, body.exclude_seen, body.ranker)
        answer: Answer = await asyncio.wrap_future(service.batcher.submit(query))
        titles = rec.run.data.titles
        return {"run": rec.run.path.name, "stage": answer.stage, "items": _items(answer.items),
                "encoder_items": _items(answer.encoder_items),
                "history": [titles[i] for i in query.history], "notes": answer.notes}

    return app
