"""The gateway's HTTP face: FastAPI routes that hand every request to :class:`GatewayService`.

Routes hold no protection logic: each names its action, reads its input, and lets the service run
the chain. Two guards sit in front of the routes as plain ASGI middleware, because they must act
before a body is read: the body-size limit and the request timeout.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelward.gateway.config import GatewayConfig
from modelward.gateway.identity import Principal
from modelward.gateway.keys import Action, Role, describe_key
from modelward.gateway.metrics import CONTENT_TYPE_LATEST
from modelward.gateway.refusals import Refusal
from modelward.gateway.service import GatewayService, Outcome, RequestInfo

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TabularRequest(_Body):
    """Rows of feature values in the served model's schema order."""

    rows: list[list[float]] = Field(min_length=1, max_length=1000)


class ReportRequest(_Body):
    """A moderator's report on one decision."""

    decision_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")
    reason: str = Field(min_length=1, max_length=2000)


class DeployRequest(_Body):
    """The artifact (a folder name under ``models_dir``) to verify and serve."""

    artifact: str = Field(min_length=1, max_length=200)


class KeyRequest(_Body):
    """A new API key: whose, which role, optionally narrower scopes and a lifetime."""

    principal: str = Field(min_length=1, max_length=200)
    role: Role
    scopes: list[Action] | None = None
    expires_in_s: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class RotateRequest(_Body):
    """How long the old key keeps working after rotation."""

    grace_s: float = Field(default=300.0, ge=0, le=30 * 86400)


class RoleRequest(_Body):
    """The role a user is to hold from now on."""

    role: Role


def create_app(service: GatewayService) -> FastAPI:
    """The FastAPI application serving ``service``."""
    config = service.config

    predictions = _InferencePool(inference_threads(config))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.server.worker_threads
        yield

    app = FastAPI(
        title="modelward gateway",
        version="1",
        description="A protective inference gateway: every request authenticated, limited, validated, "
        "hardened and written to a tamper-evident audit log before it is answered.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    async def run(
        request: Request, action: str, required: Action | None, work: Callable[..., Any], *, inference: bool = False
    ) -> Response:
        info = _info(request, action)
        limiter = predictions.limiter() if inference else None  # None: the default budget
        outcome = await anyio.to_thread.run_sync(service.handle, info, required, work, limiter=limiter)
        return _respond(outcome)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()[:5]
        )
        refusal = Refusal(422, "invalid_request", problems or "the request does not match the API")
        return _respond(await run_in_threadpool(service.record_refusal, _info(request, "invalid-request"), refusal))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        reason = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code, "http_error")
        refusal = Refusal(exc.status_code, reason, str(exc.detail))
        return _respond(await run_in_threadpool(service.record_refusal, _info(request, reason), refusal))

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers (not audited: it carries no principal and no data)."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    async def ready() -> Response:
        """Readiness: a verified model is loaded (503 otherwise)."""
        current = service.registry.current
        if current is None:
            return _respond(Outcome(503, {"detail": {"reason": "not_ready", "message": "no model is being served"}}))
        return _respond(Outcome(200, {"status": "ready", "model": current.describe()}))

    @app.get("/metrics", tags=["operations"])
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (auditor or admin unless ``metrics.public``)."""
        required = None if config.metrics.public else Action.READ_METRICS
        info = _info(request, "read-metrics")
        outcome = await run_in_threadpool(service.handle, info, required, lambda _p: (200, service.metrics.render()))
        if outcome.status == 200:
            return Response(outcome.body, media_type=CONTENT_TYPE_LATEST)
        return _respond(outcome)

    @app.post("/v1/predict/image", tags=["predict"], openapi_extra=_IMAGE_BODY)
    async def predict_image(request: Request) -> Response:
        """Classify one uploaded image (multipart field ``file`` or the raw bytes)."""
        data = await _image_bytes(request)
        return await run(
            request, "predict-image", Action.PREDICT, lambda p: service.predict_image(p, data), inference=True
        )

    @app.post("/v1/predict/tabular", tags=["predict"])
    async def predict_tabular(request: Request, body: TabularRequest) -> Response:
        """Classify rows of a tabular model."""
        return await run(
            request, "predict-tabular", Action.PREDICT, lambda p: service.predict_tabular(p, body.rows), inference=True
        )

    @app.get("/v1/decisions", tags=["moderation"])
    async def decisions(request: Request, limit: int = 50) -> Response:
        """The newest moderation decisions (moderators)."""
        bounded = max(1, min(limit, 500))
        return await run(request, "read-decisions", Action.READ_DECISIONS, lambda _p: service.decisions(bounded))

    @app.post("/v1/reports", tags=["moderation"], status_code=201)
    async def file_report(request: Request, body: ReportRequest) -> Response:
        """File a report on a decision (moderators)."""
        return await run(
            request, "file-report", Action.FILE_REPORTS, lambda p: service.file_report(p, body.decision_id, body.reason)
        )

    @app.get("/v1/models", tags=["models"])
    async def models(request: Request) -> Response:
        """The served model and the versions kept for rollback."""
        return await run(request, "view-models", Action.VIEW_MODELS, lambda _p: service.models())

    @app.post("/v1/models/deploy", tags=["models"])
    async def deploy(request: Request, body: DeployRequest) -> Response:
        """Verify and serve a new signed artifact (ML engineers, with MFA)."""
        return await run(request, "deploy-model", Action.DEPLOY_MODEL, lambda _p: service.deploy(body.artifact))

    @app.post("/v1/models/rollback", tags=["models"])
    async def rollback(request: Request) -> Response:
        """Serve the previous version again (ML engineers, with MFA)."""
        return await run(request, "rollback-model", Action.DEPLOY_MODEL, lambda _p: service.rollback())

    @app.get("/v1/keys", tags=["administration"])
    async def list_keys(request: Request) -> Response:
        """Every API key, without secrets (admins, with MFA)."""
        return await run(request, "list-keys", Action.MANAGE_KEYS, lambda _p: (200, {"keys": _keys(service)}))

    @app.post("/v1/keys", tags=["administration"], status_code=201)
    async def create_key(request: Request, body: KeyRequest) -> Response:
        """Issue a key; its secret is in this response and nowhere else (admins, with MFA)."""

        def work(_p: Principal | None) -> tuple[int, dict[str, Any]]:
            issued = service.keys.create(body.principal, body.role, scopes=body.scopes, ttl_s=body.expires_in_s)
            described = describe_key(issued.record, time.time())
            return 201, {"key": issued.key, **described, "audit": {"created": described}}

        return await run(request, "create-key", Action.MANAGE_KEYS, work)

    @app.post("/v1/keys/{prefix}/rotate", tags=["administration"])
    async def rotate_key(request: Request, prefix: str, body: RotateRequest) -> Response:
        """Issue a successor key; the old one expires after the grace period (admins, with MFA)."""

        def work(_p: Principal | None) -> tuple[int, dict[str, Any]]:
            issued = service.keys.rotate(prefix, grace_s=body.grace_s)
            described = describe_key(issued.record, time.time())
            return 200, {"key": issued.key, **described, "audit": {"rotated": prefix, "successor": described}}

        return await run(request, "rotate-key", Action.MANAGE_KEYS, work)

    @app.delete("/v1/keys/{prefix}", tags=["administration"])
    async def revoke_key(request: Request, prefix: str) -> Response:
        """Refuse a key from now on (admins, with MFA)."""

        def work(_p: Principal | None) -> tuple[int, dict[str, Any]]:
            service.keys.revoke(prefix)
            return 200, {"revoked": prefix, "audit": {"revoked": prefix}}

        return await run(request, "revoke-key", Action.MANAGE_KEYS, work)

    @app.get("/v1/users", tags=["administration"])
    async def list_users(request: Request) -> Response:
        """Every user and role (admins, with MFA)."""
        return await run(request, "list-users", Action.CHANGE_ROLES, lambda _p: (200, {"users": _users(service)}))

    @app.put("/v1/users/{name}/role", tags=["administration"])
    async def set_role(request: Request, name: str, body: RoleRequest) -> Response:
        """Change a user's role; their existing keys follow it (admins, with MFA)."""

        def work(_p: Principal | None) -> tuple[int, dict[str, Any]]:
            service.users.set_role(name, body.role)
            return 200, {"user": name, "role": body.role.value, "audit": {"user": name, "role": body.role.value}}

        return await run(request, "change-role", Action.CHANGE_ROLES, work)

    @app.get("/v1/audit-log/verify", tags=["audit"])
    async def verify_audit_log(request: Request) -> Response:
        """Check the chain and signed checkpoints (auditors)."""
        return await run(request, "verify-audit-log", Action.READ_AUDIT_LOG, lambda _p: service.verify_audit_log())

    @app.get("/v1/audit-log/export", tags=["audit"])
    async def export_audit_log(request: Request, after_seq: int = 0, limit: int = 1000) -> Response:
        """Records after ``after_seq`` as JSON lines (auditors, with MFA)."""
        bounded = max(1, min(limit, 10_000))

        def work(_p: Principal | None) -> tuple[int, Any]:
            lines = []
            for record in service.stores.audit.records():
                if record.seq <= after_seq:
                    continue
                lines.append(orjson.dumps(record.__dict__))
                if len(lines) >= bounded:
                    break
            return 200, b"\n".join(lines) + (b"\n" if lines else b"")

        info = _info(request, "export-audit-log")
        outcome = await run_in_threadpool(service.handle, info, Action.EXPORT_AUDIT_LOG, work)
        if outcome.status == 200:
            return Response(outcome.body, media_type="application/x-ndjson")
        return _respond(outcome)

    app.add_middleware(Timeout, service=service, config=config)
    app.add_middleware(BodyLimit, service=service, config=config)  # outermost: before anything reads the body
    return app


def inference_threads(config: GatewayConfig) -> int:
    """How many predictions may run at once: ``server.inference_threads``, else one per CPU core (at least 2).

    Inference is CPU work under the GIL; more threads than cores only add GIL hand-offs (each torch op
    releases and retakes it), which cost more CPU than they hide: on 2 cores, 2 threads served 20-40% more
    requests per second than 8 or 16 with SQLite, and 12% more than 8 with Redis on loopback
    (``benchmarks/gateway/``). Stores across a slow network are the case for more.
    """
    if config.server.inference_threads is not None:
        return config.server.inference_threads
    return max(2, os.cpu_count() or 2)


class _InferencePool:
    """The thread budget of predictions, apart from anyio's default one (``server.worker_threads``).

    Everything else (administration, moderation, refusals) runs on the default budget, so a slow
    administrative action (verifying a long audit log, deploying a model) cannot hold the threads
    predictions need, and a flood of predictions cannot starve administration. The limiter is made on
    first use, inside the running event loop.
    """

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._threads)
        return self._limiter


def _keys(service: GatewayService) -> list[dict[str, Any]]:
    now = time.time()
    return [describe_key(record, now) for record in service.keys.list()]


def _users(service: GatewayService) -> list[dict[str, Any]]:
    return [
        {"name": u.name, "role": u.role.value, "disabled": u.disabled, "mfa_enrolled": u.totp_secret is not None}
        for u in service.users.list()
    ]


def _info(request: Request, action: str) -> RequestInfo:
    """What a route's request tells the chain: read from the ASGI scope, as the guards read it."""
    return _scope_info(request.scope, action)


def _respond(outcome: Outcome) -> Response:
    return Response(
        orjson.dumps(outcome.body), status_code=outcome.status, headers=outcome.headers, media_type=outcome.media_type
    )


async def _image_bytes(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=4)
        except StarletteHTTPException:
            raise
        except Exception:
            return b""  # an unparseable form is an empty upload: validation refuses it with a reason
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return b""
        return await upload.read()
    return await request.body()


# --- guards that act before a route reads the body -------------------------------------------
class _BodyTooLarge(StarletteHTTPException):
    """Raised while a streamed body passes the limit; the HTTP error handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies are limited to {limit} bytes")


class _StartTracker:
    """Passes messages to ``send`` and remembers whether the response has started (then it is too late to refuse)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class BodyLimit:
    """Refuse bodies over ``server.max_body_bytes`` with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, service: GatewayService, config: GatewayConfig) -> None:
        self.app = app
        self.service = service
        self.limit = config.server.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, send)
            return
        seen = 0
        tracker = _StartTracker(send)

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, tracker)
        except _BodyTooLarge:
            if not tracker.started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        refusal = Refusal(413, "body_too_large", f"request bodies are limited to {self.limit} bytes")
        await _refuse_at_guard(self.service, scope, send, "body-too-large", refusal)


class Timeout:
    """Answer 503 ``timeout`` when a request takes longer than ``server.request_timeout_s``.

    It bounds what happens on the event loop (a slow body upload, say); work already handed to a thread
    (inference, the audit commit) finishes, and is audited, before the refusal is sent.
    """

    def __init__(self, app: ASGIApp, service: GatewayService, config: GatewayConfig) -> None:
        self.app = app
        self.service = service
        self.seconds = config.server.request_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracker = _StartTracker(send)
        with anyio.move_on_after(self.seconds) as deadline:  # a cancel scope: no extra task per request
            await self.app(scope, receive, tracker)
        if deadline.cancelled_caught and not tracker.started:
            refusal = Refusal(503, "timeout", f"the request took longer than {self.seconds} s")
            await _refuse_at_guard(self.service, scope, send, "timeout", refusal)


async def _refuse_at_guard(service: GatewayService, scope: Scope, send: Send, action: str, refusal: Refusal) -> None:
    """Audit a refusal a guard decided before any route ran, then send it."""
    outcome = await run_in_threadpool(service.record_refusal, _scope_info(scope, action), refusal)
    await _send(send, outcome)


def _scope_info(scope: Scope, action: str) -> RequestInfo:
    """Action, lower-case headers, client address, path and method of a request, the same for routes and guards."""
    client = scope.get("client")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    return RequestInfo(
        action, headers, client[0] if client else "unknown", scope.get("path", ""), scope.get("method", "")
    )


async def _send(send: Callable[[Message], Awaitable[None]], outcome: Outcome) -> None:
    body = orjson.dumps(outcome.body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in outcome.headers.items()]
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
