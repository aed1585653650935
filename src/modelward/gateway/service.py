"""The protection chain, free of HTTP: limit, authenticate, authorize, validate, predict, harden, audit.

:class:`GatewayService` owns every part the configuration names (stores, key and user managers, JWT
validator, rate limiters, model registry, audit writer, metrics). :meth:`GatewayService.handle` runs one
request through the chain and returns only after the request's audit record is durable; when the record
cannot be written the request is refused with 503, so nothing is acknowledged that the log lacks.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from modelward.core.errors import InputError, ModelwardError
from modelward.defenses.output_hardening import HardeningStep, LabelOnly, parse_steps
from modelward.gateway.audit_log import AuditLog, BatchingWriter
from modelward.gateway.config import GatewayConfig, Stores, open_stores, resolve_secret, totp_secret_box
from modelward.gateway.identity import Principal, UserManager, authorize, principal_from_key
from modelward.gateway.jwt_auth import JWTValidator, TokenRejected, settings_from_config
from modelward.gateway.keys import MFA_REQUIRED, Action, KeyManager
from modelward.gateway.metrics import GatewayMetrics
from modelward.gateway.model_registry import ModelRegistry, ServedModel
from modelward.gateway.ratelimit import Bucket, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from modelward.gateway.redaction import Redactor
from modelward.gateway.refusals import Refusal
from modelward.gateway.uploads import ImageLimits, UploadRejected, validate_digit_upload, validate_tabular
from modelward.supplychain.signing import load_private_key, load_public_key

__all__ = ["GatewayService", "Outcome", "RequestInfo"]

log = logging.getLogger(__name__)

_AUTH_STATUS = {"mfa_required": 403, "mfa_invalid": 403, "forbidden": 403}


@dataclass(frozen=True)
class RequestInfo:
    """What the chain needs to know about a request: its audit action, headers (lower-case) and client."""

    action: str
    headers: Mapping[str, str]
    client: str
    path: str
    method: str = "GET"


@dataclass
class Outcome:
    """A finished request: HTTP status, JSON body (or raw text) and extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


Work = Callable[[Principal | None], tuple[int, Any]]


class GatewayService:
    """Every protection of one gateway, wired from its configuration."""

    def __init__(self, config: GatewayConfig, *, stores: Stores | None = None) -> None:
        self.config = config
        self.stores = stores if stores is not None else open_stores(config)
        try:
            self.keys = KeyManager(self.stores.keys)
            self.users = UserManager(
                self.stores.users, valid_window=config.auth.totp_valid_window, secrets=totp_secret_box(config)
            )
            self.jwt = self._jwt_validator()
            self.limiter = self._limiter()
            limits = config.rate_limits
            self._address_bucket = Bucket(limits.per_address.rate_per_s, limits.per_address.burst)
            self._principal_bucket = Bucket(limits.per_principal.rate_per_s, limits.per_principal.burst)
            self._quota_bucket = None if limits.daily_quota is None else Bucket.per_day(limits.daily_quota)
            self.metrics = GatewayMetrics()
            self.audit = AuditLog(
                store=self.stores.audit,
                signing_key=self._audit_key(),
                checkpoint_every=config.audit.checkpoint_every,
                redactor=self._redactor(),
            )
            self.writer = BatchingWriter(self.audit, max_delay_ms=config.audit.batch_delay_ms)
            self.registry = ModelRegistry(
                config.path(config.model.models_dir),
                [load_public_key(config.path(p)) for p in config.model.public_keys],
                allow_pickle=config.model.allow_pickle,
                keep_versions=config.model.keep_versions,
            )
            self.image_limits = ImageLimits(
                max_bytes=config.uploads.max_bytes,
                max_pixels=config.uploads.max_pixels,
                max_ratio=config.uploads.max_ratio,
            )
            self._policies = _parse_policies(config)
            self._noise_lock = threading.Lock()
            served = self.registry.deploy(config.model.artifact)
        except BaseException:
            self.stores.close()
            raise
        self.metrics.serving(served.artifact, served.version, served.key_id)
        self.writer.append("gateway", "start", "ok", {"model": served.describe()})

    # --- wiring ----------------------------------------------------------------------------
    def _jwt_validator(self) -> JWTValidator | None:
        settings = settings_from_config(self.config)
        return None if settings is None else JWTValidator(settings)

    def _limiter(self) -> RateLimiter:
        limits = self.config.rate_limits
        if limits.backend == "redis":
            return RedisRateLimiter(
                resolve_secret(limits.redis_url or "", "rate_limits.redis_url", self.config.base_dir)
            )
        return MemoryRateLimiter()

    def _audit_key(self) -> Any:
        path = self.config.audit.signing_key
        return None if path is None else load_private_key(self.config.path(path))

    def _redactor(self) -> Redactor:
        env = self.config.audit.redaction_key_env
        if env is None:
            return Redactor()
        return Redactor(hmac_key=resolve_secret(f"env:{env}", "audit.redaction_key_env").encode())

    def close(self) -> None:
        """Write a last record and checkpoint, then release every store."""
        try:
            self.writer.append("gateway", "stop", "ok", {})
        finally:
            self.writer.close()
            self.audit.close()
            self.limiter.close()
            self.stores.close()

    # --- the chain -------------------------------------------------------------------------
    def handle(self, request: RequestInfo, required: Action | None, work: Work) -> Outcome:
        """Run ``work`` behind the protections; return only after the audit record is durable."""
        started = time.perf_counter()
        actor = "anonymous"
        details: dict[str, Any] = {"path": request.path, "method": request.method, "client": request.client}
        try:
            principal, turned_away = self._admit(request, required)
            if principal is not None:
                actor = principal_label(principal)
            if turned_away is not None:
                raise turned_away
            if principal is not None and required is not None:
                decision = authorize(principal, required, mfa_code=request.headers.get("x-mfa-code"), users=self.users)
                if not decision.allowed:
                    raise Refusal(
                        _AUTH_STATUS.get(decision.reason, 403),
                        decision.reason,
                        _auth_message(decision.reason, required),
                    )
                if required in MFA_REQUIRED:
                    self._record_attempt(request, actor, details)
            status, body = work(principal)
            outcome = Outcome(status, body)
            if isinstance(body, dict) and "audit" in body:
                details.update(body.pop("audit"))
            result = "ok"
        except Refusal as refusal:
            outcome = Outcome(refusal.status, refusal.body(), dict(refusal.headers))
            details.update(refusal.details)
            result = refusal.reason
        except UploadRejected as rejected:
            outcome = Outcome(rejected.http_status, _error(rejected.reason, rejected.message))
            result = rejected.reason
        except ModelwardError as error:
            outcome = Outcome(422, _error("invalid_input", error.message))
            result = "invalid_input"
        except Exception:
            log.exception("unexpected error while serving %s %s", request.method, request.path)
            outcome = Outcome(500, _error("internal_error", "the gateway failed to serve this request"))
            result = "internal_error"
        return self._finish(request, actor, result, details, outcome, started)

    def _record_attempt(self, request: RequestInfo, actor: str, details: dict[str, Any]) -> None:
        """Write-ahead for privileged actions: the attempt is durable before anything changes, or nothing does.

        Without it a deployment or a new admin key could take effect and the outcome record then fail to be
        written: a privileged change the log never saw. The outcome record follows as for any request.
        """
        try:
            self.writer.append(actor, request.action, "attempt", dict(details))
        except Exception:
            log.exception("audit record could not be written; refusing the privileged action")
            raise Refusal(503, "audit_unavailable", "the audit log is unavailable; nothing was changed") from None

    def record_refusal(self, request: RequestInfo, refusal: Refusal) -> Outcome:
        """Audit a refusal decided outside the chain (body too large, unknown route, bad JSON)."""
        started = time.perf_counter()
        details = {"path": request.path, "method": request.method, "client": request.client, **refusal.details}
        outcome = Outcome(refusal.status, refusal.body(), dict(refusal.headers))
        return self._finish(request, "anonymous", refusal.reason, details, outcome, started)

    def _finish(
        self, request: RequestInfo, actor: str, result: str, details: dict[str, Any], outcome: Outcome, started: float
    ) -> Outcome:
        details["status"] = outcome.status
        try:
            self.writer.append(actor, request.action, result, details)
        except Exception:
            log.exception("audit record could not be written; refusing the request")
            outcome = Outcome(503, _error("audit_unavailable", "the audit log is unavailable; request not served"))
            result = "audit_unavailable"
        self.metrics.observe(request.action, result, outcome.status, time.perf_counter() - started)
        return outcome

    def _admit(self, request: RequestInfo, required: Action | None) -> tuple[Principal | None, Refusal | None]:
        """Authenticate (when the route needs it), take the request's rate-limit tokens in one call, and say
        who is calling and why the request must be refused (rate limit first, then credentials), if it must.

        Address, principal and quota buckets go to the limiter together, so a Redis limiter answers in one
        round trip instead of one per bucket. The address bucket comes first and is charged whatever the
        credentials were: a refused credential still costs its sender a token, and a limited sender gets 429
        before learning whether its credential was good.
        """
        hits = [(f"addr:{request.client}", self._address_bucket)]
        principal: Principal | None = None
        failed: Refusal | None = None
        if required is not None:
            try:
                principal = self.authenticate(request.headers)
            except Refusal as refusal:
                failed = refusal
            else:
                hits.append((f"principal:{principal.name}", self._principal_bucket))
                if self._quota_bucket is not None:
                    hits.append((f"quota:{principal.name}", self._quota_bucket))
        try:
            decisions = self.limiter.hit_many(hits)
        except ModelwardError as error:
            raise Refusal(503, "rate_limit_unavailable", "rate-limit state is unavailable; failing closed") from error
        refused = decisions[-1]
        if not refused.allowed:
            retry = max(1, int(refused.retry_after_s + 0.999))
            quota = hits[len(decisions) - 1][1] is self._quota_bucket
            reason = "quota_exceeded" if quota else "rate_limited"
            what = "daily quota" if quota else "rate limit"
            headers = {"Retry-After": str(retry)}
            return principal, Refusal(429, reason, f"{what} exceeded; retry after {retry} s", headers=headers)
        return principal, failed

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal behind the request's credentials, or a 401 :class:`Refusal` naming why not."""
        presented = _credential(headers)
        if presented is None:
            raise Refusal(
                401,
                "missing_credentials",
                "send an API key or bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if presented.startswith("mw_") and self.config.auth.api_keys:
            result = self.keys.authenticate(presented)
            if not result.ok or result.record is None:
                raise Refusal(
                    401, result.reason.value, f"API key refused ({result.reason.value})", details={"key": result.prefix}
                )
            principal = principal_from_key(result.record, self.stores.users)
            if principal is None:
                raise Refusal(401, "disabled", "the key's user is disabled", details={"key": result.prefix})
            return principal
        if self.jwt is not None and presented.count(".") == 2:
            try:
                principal = self.jwt.validate(presented)
            except TokenRejected as rejected:
                raise Refusal(401, "invalid_token", f"bearer token refused ({rejected.reason})") from None
            return self._as_registered_user(principal)
        raise Refusal(401, "malformed", "credentials are not an API key or an accepted bearer token")

    def _as_registered_user(self, principal: Principal) -> Principal:
        """A token whose subject is a registered user must agree with the user's current role and state.

        Neither side can widen the other: a disabled user, or a token naming another role than the user
        holds now (a stale token after a demotion, say), is refused.
        """
        user = self.stores.users.get(principal.name)
        if user is None:
            return principal
        if user.disabled:
            raise Refusal(401, "disabled", "the token's user is disabled")
        if user.role != principal.role:
            raise Refusal(403, "role_mismatch", "the token's role is not the user's current role")
        return principal

    # --- work the routes hand to the chain --------------------------------------------------
    def predict_image(self, principal: Principal | None, data: bytes) -> tuple[int, dict[str, Any]]:
        """Validate an uploaded image, classify it, and answer as the caller's role may see."""
        model = self._model()
        if model.input_kind != "image-digits":
            raise Refusal(415, "wrong_input_kind", f"the served model takes {model.input_kind} input, not images")
        x = validate_digit_upload(data, self.image_limits)
        return 200, self._answer(principal, model, x)

    def predict_tabular(self, principal: Principal | None, rows: object) -> tuple[int, dict[str, Any]]:
        """Validate tabular rows against the model's schema, classify them, answer as the role may see."""
        model = self._model()
        if model.input_kind != "tabular" or model.tabular_schema is None:
            raise Refusal(415, "wrong_input_kind", f"the served model takes {model.input_kind} input, not rows")
        x = validate_tabular(rows, model.tabular_schema)
        return 200, self._answer(principal, model, x)

    def _model(self) -> ServedModel:
        model = self.registry.current
        if model is None:
            raise Refusal(503, "not_ready", "no model is being served")
        return model

    def _answer(self, principal: Principal | None, model: ServedModel, x: torch.Tensor) -> dict[str, Any]:
        role = principal.role.value if principal is not None else ""
        steps, label_only = self._policies.get(role, _LABEL_ONLY)
        probabilities = model.classifier.probabilities(x)
        if probabilities.dtype != torch.float32:
            probabilities = probabilities.to(torch.float32)
        labels = probabilities.argmax(dim=1)
        rows: list[list[float]] = []
        if not label_only:
            with self._noise_lock:
                for step in steps:
                    probabilities = step.apply(probabilities, labels)
            rows = probabilities.tolist()  # one conversion, not one torch call per value
        decisions = []
        for index, label in enumerate(labels.tolist()):
            entry: dict[str, Any] = {"decision_id": uuid.uuid4().hex, "label": label}
            if not label_only:
                # six decimals drop float32 noise (a rounded 0.36 is not sent as 0.36000001430511475)
                entry["scores"] = [round(v, 6) for v in rows[index]]
            decisions.append(entry)
        first = decisions[0]
        answer: dict[str, Any] = {**first, "model_version": model.version}
        if len(decisions) > 1:
            answer["decisions"] = decisions
        answer["audit"] = {
            "decisions": [{"decision_id": d["decision_id"], "label": d["label"]} for d in decisions],
            "model_version": model.version,
        }
        return answer

    def decisions(self, limit: int) -> tuple[int, dict[str, Any]]:
        """The newest moderation decisions, read from the audit log (the system of record)."""
        found: list[dict[str, Any]] = []
        for record in self.stores.audit.tail(max(limit * 2, 50), action="predict-image") + self.stores.audit.tail(
            max(limit * 2, 50), action="predict-tabular"
        ):
            if record.outcome != "ok":
                continue
            for decision in record.details.get("decisions", []):
                found.append(
                    {
                        "decision_id": decision.get("decision_id"),
                        "label": decision.get("label"),
                        "ts": record.ts,
                        "model_version": record.details.get("model_version"),
                    }
                )
        found.sort(key=lambda d: str(d["ts"]), reverse=True)
        return 200, {"decisions": found[:limit]}

    def file_report(self, principal: Principal | None, decision_id: str, reason: str) -> tuple[int, dict[str, Any]]:
        """A moderator's report on a decision; the report itself is the audit record."""
        report_id = uuid.uuid4().hex
        return 201, {
            "report_id": report_id,
            "decision_id": decision_id,
            "audit": {"report_id": report_id, "decision_id": decision_id, "reason": reason[:500]},
        }

    def models(self) -> tuple[int, dict[str, Any]]:
        """The served model and the versions kept for rollback."""
        current = self.registry.current
        return 200, {
            "current": None if current is None else current.describe(),
            "history": [m.describe() for m in self.registry.history()],
        }

    def deploy(self, artifact: str) -> tuple[int, dict[str, Any]]:
        """Verify, load and serve a new signed artifact; the previous one stays for rollback."""
        try:
            served = self.registry.deploy(artifact)
        except InputError as error:
            self.metrics.deployments.labels("deploy", "refused").inc()
            raise Refusal(422, "model_refused", error.message, details={"artifact": artifact}) from None
        self.metrics.deployments.labels("deploy", "ok").inc()
        self.metrics.serving(served.artifact, served.version, served.key_id)
        return 200, {"current": served.describe(), "audit": {"deployed": served.describe()}}

    def rollback(self) -> tuple[int, dict[str, Any]]:
        """Serve the previous version again."""
        try:
            served = self.registry.rollback()
        except InputError as error:
            self.metrics.deployments.labels("rollback", "refused").inc()
            raise Refusal(409, "no_previous_model", error.message) from None
        self.metrics.deployments.labels("rollback", "ok").inc()
        self.metrics.serving(served.artifact, served.version, served.key_id)
        return 200, {"current": served.describe(), "audit": {"rolled_back_to": served.describe()}}

    def verify_audit_log(self) -> tuple[int, dict[str, Any]]:
        """Check the whole chain and the checkpoints against the gateway's own audit key."""
        from modelward.gateway.audit_log import verify_store

        key = self._audit_key()
        result = verify_store(self.stores.audit, None if key is None else key.public_key())
        return 200, result.to_dict()


_LABEL_ONLY: tuple[list[HardeningStep], bool] = ([LabelOnly()], True)


def _parse_policies(config: GatewayConfig) -> dict[str, tuple[list[HardeningStep], bool]]:
    """Each role's hardening steps and whether they withhold scores (parsed here so a config needs no torch)."""
    policies: dict[str, tuple[list[HardeningStep], bool]] = {}
    for role, steps in config.output_policy.items():
        try:
            parsed = parse_steps(steps)
        except InputError as error:
            raise InputError(error.message, file=str(config.base_dir), field=f"output_policy.{role.value}") from None
        policies[role.value] = (parsed, any(isinstance(step, LabelOnly) for step in parsed))
    return policies


def principal_label(principal: Principal) -> str:
    """How a principal appears in the audit log: key prefix or token subject, never a secret."""
    if principal.via == "api-key" and principal.key_prefix:
        return f"key:{principal.key_prefix}"
    return f"jwt:{principal.name}"


def _credential(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return ""
        return value.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def _auth_message(reason: str, action: Action) -> str:
    if reason == "mfa_required":
        return f"{action.value} needs a second factor: send X-MFA-Code with a current TOTP code"
    if reason == "mfa_invalid":
        return "the second factor was wrong, reused, or the principal has no TOTP enrolment"
    return f"this principal may not {action.value}"


def _error(reason: str, message: str) -> dict[str, Any]:
    return {"detail": {"reason": reason, "message": message}}
