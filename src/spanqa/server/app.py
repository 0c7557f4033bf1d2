"""`spanqa serve`: a FastAPI app over one `Reader`.

Routes: POST /v1/answer (one context, or `contexts`: many passages ranked together), POST /v1/answer/batch, GET /healthz, GET /v1/model, GET / (web page),
GET /docs (OpenAPI). Every error is JSON: {"error": {"type", "message", ...}}; limits name themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from spanqa.errors import SpanqaError
from spanqa.server.guard import Door
from spanqa.server.scheduler import MicroBatcher
from spanqa.server.serve_config import ServeConfig


log = logging.getLogger(__name__)
NO_TEXT = ("context: the reader finds no text in it (no tokens: only spaces, zero-width characters or combining "
           "marks); send a passage with words")


def _not_blank(value: str | None) -> str | None:
    """A text field's check: present text must not be only whitespace."""
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


class Question(BaseModel):
    question: str = Field(min_length=1, description="the question")
    context: str = Field(min_length=1, description="the passage to answer from")

    @field_validator("question", "context")
    @classmethod
    def not_blank(cls, value: str | None) -> str | None:
        return _not_blank(value)

    def passages(self) -> list[str]:
        return [self.context]


class AnswerRequest(BaseModel):
    question: str = Field(min_length=1, description="the question")
    context: str | None = Field(None, min_length=1, description="the passage to answer from")
    contexts: list[str] | None = Field(None, min_length=1, description="several passages (e.g. a retriever's "
                                       "hits): answers ranked across them, each with its `passage` index")
    top_k: int = Field(1, ge=1, strict=True, description="answers to return, best first (a JSON integer)")

    @field_validator("question", "context")
    @classmethod
    def not_blank(cls, value: str | None) -> str | None:
        return _not_blank(value)

    @field_validator("contexts")
    @classmethod
    def no_blank_passage(cls, value: list[str] | None) -> list[str] | None:
        for i, passage in enumerate(value or []):
            if not passage.strip():
                raise ValueError(f"passage {i} is blank")
        return value

    @model_validator(mode="after")
    def one_of_context_or_contexts(self):
        if (self.context is None) == (self.contexts is None):
            raise ValueError("give exactly one of `context` (a passage) or `contexts` (a list of passages)")
        return self

    def passages(self) -> list[str]:
        return [self.context] if self.context is not None else list(self.contexts)


class BatchRequest(BaseModel):
    items: list[Question] = Field(min_length=1, description="questions with their contexts")
    top_k: int = Field(1, ge=1, strict=True)


class LimitExceeded(Exception):
    def __init__(self, limit: str, value: int, maximum: int, status: int = 413) -> None:
        super().__init__(f"{limit}: {value} is over the limit of {maximum}")
        self.limit, self.value, self.maximum, self.status = limit, value, maximum, status


def _error(status: int, kind: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"type": kind, "message": message, **extra}},
                        headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before the app reads it."""

    def __init__(self, app, max_bytes: int, timeout: float = 10.0) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(scope, receive, send, int(declared))
        chunks, size, more = [], 0, True
        deadline = time.monotonic() + self.timeout
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                response = _error(408, "timeout", f"the request body did not arrive within {self.timeout:g} s",
                                  limit="body_timeout", maximum=self.timeout)
                return await response(scope, receive, send)
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._reject(scope, receive, send, size)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await self.app(scope, _replay([body]), send)

    async def _reject(self, scope, receive, send, size: int):
        response = _error(413, "limit_exceeded", f"request body: {size} bytes is over the limit of {self.max_bytes}",
                          limit="max_body_bytes", maximum=self.max_bytes)
        await response(scope, receive, send)


def _replay(messages):
    queue = list(messages)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


def create_app(reader, config: ServeConfig = ServeConfig(), index: str | Path | None = None, api_key: str = "") -> FastAPI:
    """The app for `reader` (anything with `answer_batch`, `name`, `info`, `allow_null`, `data`, `decode`);
    with `index` (a `spanqa index` folder), also POST /v1/ask over that collection; with `api_key`, every
    request but the probes and the page must carry it (`spanqa.server.guard`)."""
    metrics = ServerMetrics()
    batcher = MicroBatcher(reader.answer_batch, config.max_batch_size, config.max_wait_ms, config.max_batch_windows,
                           fair=config.fair_scheduling, on_batch=metrics.batch_done)
    count = getattr(reader, "count_windows", None)
    shown = reader.name if config.show_model_path else Path(str(reader.name)).name or str(reader.name)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await batcher.stop()

    app = FastAPI(title="spanqa", description="Extractive question answering", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.batcher, app.state.reader, app.state.config = batcher, reader, config
    _add_error_handlers(app)
    _add_offline_docs(app)

    async def submit(pairs: list, top_k: int) -> list:
        waiting = batcher.waiting()
        if waiting + len(pairs) > config.max_queue:
            raise Overloaded(waiting, config.max_queue)
        costs = await asyncio.to_thread(count, pairs) if count else None
        if costs is not None and sum(costs) > config.max_windows_per_request:
            raise LimitExceeded("max_windows_per_request", sum(costs), config.max_windows_per_request)
        try:
            return await asyncio.wait_for(batcher.submit(pairs, top_k, costs), config.request_timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(config.request_timeout) from None

    @app.post("/v1/answer")
    async def answer(req: AnswerRequest) -> dict:
        if req.contexts is not None and len(req.contexts) > config.max_passages:
            raise LimitExceeded("max_passages", len(req.contexts), config.max_passages)
        _check([req], req.top_k, config)
        t0 = time.perf_counter()
        (answers,) = await submit([(req.question, req.context or req.contexts)], req.top_k)
        if not answers:
            raise SpanqaError(NO_TEXT)
        return {"answers": [asdict(a) for a in answers], "model": shown, "time_ms": _ms(t0)}

    @app.post("/v1/answer/batch")
    async def answer_batch(req: BatchRequest) -> dict:
        if len(req.items) > config.max_questions_per_request:
            raise LimitExceeded("max_questions_per_request", len(req.items), config.max_questions_per_request)
        _check(req.items, req.top_k, config)
        t0 = time.perf_counter()
        results = await submit([(q.question, q.context) for q in req.items], req.top_k)
        return {"results": [{"answers": [asdict(a) for a in r]} if r else
                            {"answers": [], "error": {"type": "invalid_request", "message": NO_TEXT,
                                                      "field": f"items.{i}.context"}}
                            for i, r in enumerate(results)],
                "model": shown, "time_ms": _ms(t0)}

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok", "model": shown}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: 503 while the queue is full, so a load balancer sends work elsewhere."""
        waiting = batcher.waiting()
        ready = waiting < config.max_queue
        return JSONResponse(status_code=200 if ready else 503,
                            content={"status": "ready" if ready else "saturated", "queued": waiting,
                                     "max_queue": config.max_queue})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(batcher), media_type=metrics.content_type)

    @app.get("/v1/model")
    async def model_info() -> dict:
        stats = batcher.stats
        return {
            "name": shown,
            "version_2_with_negative": reader.allow_null,
            "metrics": reader.info.eval,
            "precision": reader.precision,
            "backend": getattr(reader, "backend", "torch"),
            "backend_reason": getattr(reader, "backend_reason", ""),
            "settings": {"data": asdict(reader.data), "decode": asdict(reader.decode), "server": asdict(config)},
            "batching": {"batches": stats.batches, "questions": stats.questions,
                         "mean_batch_size": stats.questions / stats.batches if stats.batches else 0.0},
        }

    if index is not None:
        from spanqa.server.collection_api import ServedIndex, add_collection_routes

        add_collection_routes(app, ServedIndex(index), config, shown, submit, _check, LimitExceeded)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return (resources.files("spanqa.server") / "static" / "index.html").read_text()

    app.state.metrics = metrics
    return ServedApp(app, config, metrics, api_key)


class ServedApp:
    """The FastAPI app behind the host check, the key and work limit (`Door`), the body limit and the request
    metrics; `.fastapi` and `.state` stay reachable for tests."""

    def __init__(self, app: FastAPI, config: ServeConfig, metrics: ServerMetrics, api_key: str = "") -> None:
        self.fastapi = app
        self._asgi = Door(BodyLimit(app, config.max_body_bytes, config.body_timeout), api_key,
                          config.limit_concurrency, config.metrics_need_key, _error)
        self.state, self.metrics = app.state, metrics
        self.hosts = LOOPBACK_NAMES if config.host in LOOPBACK_NAMES else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self._asgi(scope, receive, send)
        if self.hosts is not None and _host_of(scope) not in self.hosts:  # DNS rebinding against a local server
            response = _error(400, "invalid_host", "this server is bound to loopback and answers only requests for "
                                                   "localhost or 127.0.0.1 (Host header)")
            return await response(scope, receive, send)
        t0, status = time.perf_counter(), {"code": 500}

        async def send_and_count(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._asgi(scope, receive, send_and_count)
        finally:
            self.metrics.observe(scope.get("path", ""), status["code"], time.perf_counter() - t0)


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _host_of(scope) -> str:
    """The Host header's name, without the port."""
    host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within the request timeout of {seconds:g} s; the server is busy, retry or send "
                         "less at once")
        self.seconds = seconds


class Overloaded(Exception):
    def __init__(self, waiting: int, maximum: int) -> None:
        super().__init__(f"the server is busy: {waiting} questions are waiting (the queue holds {maximum}); retry "
                         "shortly")
        self.waiting, self.maximum = waiting, maximum


class ServerMetrics:
    """Prometheus metrics (prometheus-client, its own registry): requests by route and status, latency,
    queue depth, batch sizes, questions answered."""

    def __init__(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.content_type = CONTENT_TYPE_LATEST
        self.requests = Counter("spanqa_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("spanqa_request_seconds", "request latency", ["route"], registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.queue = Gauge("spanqa_queue_questions", "questions waiting for the model", registry=self.registry)
        self.batch = Histogram("spanqa_batch_questions", "questions per forward pass", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.questions = Counter("spanqa_questions", "questions answered", registry=self.registry)

    def observe(self, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch_done(self, questions: int) -> None:
        """Called by the batcher after each forward pass."""
        self.batch.observe(questions)
        self.questions.inc(questions)

    def render(self, batcher) -> bytes:
        from prometheus_client import generate_latest

        self.queue.set(batcher.waiting())
        return generate_latest(self.registry)


ROUTES = {"/v1/answer", "/v1/answer/batch", "/v1/ask", "/v1/index", "/healthz", "/readyz", "/v1/model", "/metrics",
          "/", "/docs"}


def _add_offline_docs(app: FastAPI) -> None:
    """/docs from the swagger-ui-bundle package's files, not a CDN, so it works offline."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="spanqa API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _check(items, top_k: int, config: ServeConfig) -> None:
    if top_k > config.max_top_k:
        raise LimitExceeded("max_top_k", top_k, config.max_top_k, status=422)
    for q in items:
        for passage in q.passages():
            if len(passage) > config.max_context_chars:
                raise LimitExceeded("max_context_chars", len(passage), config.max_context_chars)
        if len(q.question) > config.max_question_chars:
            raise LimitExceeded("max_question_chars", len(q.question), config.max_question_chars)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


ERROR_TYPES = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 408: "timeout",
               413: "limit_exceeded", 415: "unsupported_media_type", 429: "too_many_requests", 503: "overloaded"}


def _add_error_handlers(app: FastAPI) -> None:
    """Every response the app can give on an error has one shape: {"error": {"type", "message", ...}}."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:  # not JSON at all: a 400, with where it broke (a position, not a field)
            where = next((p for p in bad_json.get("loc", ()) if isinstance(p, int)), None)
            detail = bad_json.get("ctx", {}).get("error", "")
            return _error(400, "invalid_json", "the body is not valid JSON" +
                          (f" (at character {where}: {detail})" if where is not None else ""))
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e.get("msg", "")}
                    for e in errors]
        message = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems)
        return _error(422, "invalid_request", message, field=problems[0]["field"] if problems else "",
                      problems=json.loads(json.dumps(problems, default=str)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        if status == 400:
            message = "the body could not be read as JSON: send UTF-8 encoded JSON"
        elif status == 404:
            message = f"no route {request.url.path}; see /docs for the API"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return _error(status, ERROR_TYPES.get(status, "http_error"), message,
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestTimeout)
    async def timed_out(_request: Request, exc: RequestTimeout) -> JSONResponse:
        return _error(504, "timeout", str(exc), limit="request_timeout", maximum=exc.seconds)

    @app.exception_handler(Overloaded)
    async def overloaded(_request: Request, exc: Overloaded) -> JSONResponse:
        return _error(503, "overloaded", str(exc), headers={"Retry-After": "1"}, limit="max_queue",
                      maximum=exc.maximum)

    @app.exception_handler(LimitExceeded)
    async def too_big(_request: Request, exc: LimitExceeded) -> JSONResponse:
        return _error(exc.status, "limit_exceeded", str(exc), limit=exc.limit, maximum=exc.maximum)

    @app.exception_handler(SpanqaError)
    async def refused(_request: Request, exc: SpanqaError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:12]
        log.error("request %s failed", request_id, exc_info=exc)  # the details stay in the server's log
        return _error(500, "internal_error", f"internal error; request id {request_id} (the server log has the "
                                             "details)", request_id=request_id)
