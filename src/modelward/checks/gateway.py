"""Gateway checks: probe a running modelward gateway from outside and verify its mitigations by evidence.

Each check sends real HTTP requests (see :mod:`modelward.checks.gateway_probe` for how the gateway is
reached or launched) and records every probe in an evidence table: what was sent, what a secure
gateway answers, and what came back. Together they verify authentication and least privilege, rate
limiting, label-only outputs, upload validation, the tamper-evident audit log and the model's signature.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelward.checks.base import Check, CheckContext, Evidence, EvidenceTable, number_param
from modelward.checks.gateway_probe import (
    GatewayTarget,
    Observed,
    audit_actor_count,
    cli,
    gateway_target,
    key_prefix,
    send,
)
from modelward.checks.gateway_samples import bad_uploads, png_bytes, valid_uploads
from modelward.checks.registry import register
from modelward.core.errors import InputError

PROBE_COLUMNS = ["probe", "request", "expected", "observed"]
PREDICT = "/v1/predict/image"
SCORE_KEYS = frozenset({"scores", "probabilities", "probs", "logits", "confidence", "confidences", "top_k"})


def _image_file(seed: int = 0) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (f"upload-{seed}.png", png_bytes(seed), "image/png")}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _fake_key() -> str:
    """A well-formed key no gateway issued (random prefix and secret)."""
    return f"mw_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def _table(title: str, rows: list[list[str]]) -> EvidenceTable:
    return EvidenceTable(title=title, columns=list(PROBE_COLUMNS), rows=rows)


def _where(target: GatewayTarget) -> list[str]:
    """Detail lines naming the gateway probed (and, when launched, its server log)."""
    lines = [f"gateway: {target.url}" + (" (launched for this audit)" if target.launched else "")]
    if target.log_path is not None:
        lines.append(f"gateway log: {target.log_path}")
    return lines


def _targets_if(failed: bool, targets: list[str]) -> list[str]:
    return list(targets) if failed else []


# --- authentication and least privilege --------------------------------------------------------


@register
class CredentialsRequired(Check):
    """Every request without valid credentials, and every role escalation, is refused (401/403)."""

    name = "gateway.credentials_required"
    title = "The gateway refuses missing, forged, revoked and under-privileged credentials"
    verifies = ("STRIDE-S-PROCESS", "STRIDE-E-PROCESS", "STRIDE-I-PROCESS")
    default_threshold = 1.0

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        target = gateway_target(context)
        user = target.key("end-user")
        forged = f"mw_{key_prefix(user)}_{secrets.token_urlsafe(32)}"  # a real prefix, a wrong secret
        jwt_garbage = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsImV4cCI6MX0."
        predict = {"files": _image_file()}
        probes: list[tuple[str, str, str, dict[str, Any]]] = [
            ("no credentials", "POST", PREDICT, {**predict}),
            ("malformed key", "POST", PREDICT, {**predict, "headers": _bearer("not-a-real-key")}),
            ("unknown well-formed key", "POST", PREDICT, {**predict, "headers": _bearer(_fake_key())}),
            ("known prefix, wrong secret", "POST", PREDICT, {**predict, "headers": _bearer(forged)}),
            ("unsigned JWT (alg none, expired)", "POST", PREDICT, {**predict, "headers": _bearer(jwt_garbage)}),
            ("bearer without a token", "POST", PREDICT, {**predict, "headers": {"Authorization": "Bearer"}}),
            ("basic auth", "POST", PREDICT, {**predict, "headers": {"Authorization": "Basic YWRtaW46YWRtaW4="}}),
            ("X-API-Key unknown", "POST", PREDICT, {**predict, "headers": {"X-API-Key": _fake_key()}}),
            ("X-API-Key malformed", "POST", PREDICT, {**predict, "headers": {"X-API-Key": "' OR 1=1 --"}}),
            ("end-user lists keys", "GET", "/v1/keys", {"headers": _bearer(user)}),
            ("end-user creates a key", "POST", "/v1/keys", {"headers": _bearer(user), "json": _new_key_body()}),
            ("end-user (X-API-Key) lists keys", "GET", "/v1/keys", {"headers": {"X-API-Key": user}}),
            ("end-user lists users", "GET", "/v1/users", {"headers": _bearer(user)}),
            ("end-user reads the audit log", "GET", "/v1/audit-log/verify", {"headers": _bearer(user)}),
            ("end-user exports the audit log", "GET", "/v1/audit-log/export", {"headers": _bearer(user)}),
            ("end-user reads models", "GET", "/v1/models", {"headers": _bearer(user)}),
            ("end-user deploys a model", "POST", "/v1/models/deploy", {"headers": _bearer(user), "json": _deploy()}),
            ("end-user rolls back", "POST", "/v1/models/rollback", {"headers": _bearer(user)}),
            ("end-user reads decisions", "GET", "/v1/decisions", {"headers": _bearer(user)}),
        ]
        if target.has_key("revoked"):
            probes.append(("revoked key", "POST", PREDICT, {**predict, "headers": _bearer(target.key("revoked"))}))
        if target.has_key("ml-engineer"):
            engineer = _bearer(target.key("ml-engineer"))
            deploy = {"headers": engineer, "json": _deploy()}
            probes.append(("ml-engineer deploys without MFA", "POST", "/v1/models/deploy", deploy))
        if target.has_key("admin"):
            admin = _bearer(target.key("admin"))
            create = {"headers": admin, "json": _new_key_body()}
            probes.append(("admin creates a key without MFA", "POST", "/v1/keys", create))
            probes.append(("admin predicts (not its job)", "POST", PREDICT, {**predict, "headers": admin}))

        rows: list[list[str]] = []
        bypasses: list[str] = []
        with target.client() as client:
            for name, method, path, kwargs in probes:
                observed = send(client, method, path, **kwargs)
                refused = observed.status in (401, 403)
                if not refused:
                    bypasses.append(f"{name}: {method} {path} answered {observed.describe()}")
                rows.append([name, f"{method} {path}", "401/403", observed.describe()])
        refused_fraction = 1.0 - len(bypasses) / len(probes)
        threshold = self.threshold if self.threshold is not None else 1.0
        passed = refused_fraction >= threshold
        if not target.has_key("revoked"):
            rows.append(["revoked key", "-", "401", "not probed: no revoked key named under keys"])
        return Evidence(
            check=self.name,
            passed=passed,
            message=f"{len(probes) - len(bypasses)} of {len(probes)} forged or under-privileged requests refused"
            + (f"; {len(bypasses)} got through" if bypasses else ""),
            metrics={
                "refused_fraction": refused_fraction,
                "probes": float(len(probes)),
                "bypasses": float(len(bypasses)),
            },
            threshold=threshold,
            details=[*_where(target), *(f"bypass: {b}" for b in bypasses)],
            tables=[_table("Credential probes", rows)],
            failed_targets=_targets_if(not passed, targets),
        )


def _new_key_body() -> dict[str, Any]:
    return {"principal": f"escalation-{secrets.token_hex(3)}", "role": "admin"}


def _deploy() -> dict[str, Any]:
    return {"artifact": "digits-cnn"}


# --- rate limiting -----------------------------------------------------------------------------


@register
class RateLimitEnforced(Check):
    """One principal's burst of predictions is cut off near the configured burst, with Retry-After."""

    name = "gateway.rate_limit_enforced"
    title = "The gateway rate-limits a principal's burst of requests (429 with Retry-After)"
    verifies = (
        "STRIDE-D-PROCESS",
        "ML-EXTRACTION",
        "ML-COST-HARVESTING",
        "ML-CHAFF-FLOODING",
        "ML-EVASION-BLACKBOX-DECISION",
    )
    default_threshold = 0.25  # tolerated excess over the burst (plus what refills while probing)

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        target = gateway_target(context)
        params = context.params
        bucket = target.setting("rate_limits", "per_principal")
        bucket = bucket if isinstance(bucket, dict) else {}  # url mode, or the gateway's defaults
        burst = number_param(params, "burst", float(bucket.get("burst", 60)), low=1)
        rate = number_param(params, "rate_per_s", float(bucket.get("rate_per_s", 0)), low=0)
        default_requests = math.ceil(1.5 * burst + 2 * rate)
        requests = int(number_param(params, "requests", default_requests, low=1, high=100_000))
        workers = int(number_param(params, "concurrency", 8, low=1, high=64))
        tolerance = self.threshold if self.threshold is not None else 0.25
        key = target.key("rate-limit")
        body = png_bytes(4)

        def one(_: int) -> Observed:
            files = {"file": ("burst.png", body, "image/png")}
            return send(client, "POST", PREDICT, retry_429=False, headers=_bearer(key), files=files)

        started = time.perf_counter()
        with target.client() as client, ThreadPoolExecutor(max_workers=workers) as pool:
            answers = list(pool.map(one, range(requests)))
        elapsed = time.perf_counter() - started
        allowed = sum(1 for a in answers if a.status == 200)
        limited = [i for i, a in enumerate(answers) if a.status == 429]
        other = [a.describe() for a in answers if a.status not in (200, 429)]
        with_retry = [answers[i] for i in limited if _header(answers[i], "retry-after")]
        limit = (burst + rate * elapsed) * (1 + tolerance)
        passed = bool(limited) and len(with_retry) == len(limited) and allowed <= limit and not other
        wait = max((_seconds(_header(a, "retry-after")) for a in with_retry), default=0.0)
        time.sleep(min(wait, 5.0))  # let the buckets refill before the next check probes
        rows = [
            [
                f"{requests} predictions, {workers} at a time",
                f"POST {PREDICT}",
                f"≤ {limit:.0f} allowed",
                f"{allowed} × 200",
            ],
            ["429 answers", "-", "some, each with Retry-After", f"{len(limited)} (Retry-After on {len(with_retry)})"],
        ]
        if other:
            rows.append(["other answers", "-", "none", "; ".join(sorted(set(other)))[:300]])
        first = float(limited[0] + 1) if limited else -1.0
        return Evidence(
            check=self.name,
            passed=passed,
            message=(
                f"{allowed} of {requests} rapid requests allowed in {elapsed:.2f} s (limit {limit:.0f}: burst "
                f"{burst:g} + {rate:g}/s refill, +{tolerance:.0%}); "
                + (f"first 429 at request {int(first)}" if limited else "never rate-limited")
            ),
            metrics={
                "allowed": float(allowed),
                "first_429_at": first,
                "rate_limited": float(len(limited)),
                "requests": float(requests),
                "elapsed_s": elapsed,
            },
            threshold=limit,
            details=[*_where(target), *(f"unexpected answer: {o}" for o in sorted(set(other)))],
            tables=[_table("Rate-limit probe", rows)],
            failed_targets=_targets_if(not passed, targets),
        )


def _header(observed: Observed, name: str) -> str | None:
    for key, value in observed.headers.items():
        if key.lower() == name:
            return value
    return None


def _seconds(value: str | None) -> float:
    try:
        return max(float(value or 0), 0.0)
    except ValueError:
        return 1.0


# --- output hardening --------------------------------------------------------------------------


@register
class ScoresWithheld(Check):
    """Label-only callers get a label and no confidence scores, however they ask."""

    name = "gateway.scores_withheld"
    title = "The gateway withholds confidence scores from label-only roles"
    verifies = (
        "ML-CONFIDENCE-DISCLOSURE",
        "ML-OUTPUT-RECON",
        "ML-EVASION-BLACKBOX-SCORE",
        "ML-MODEL-INVERSION",
        "ML-MEMBERSHIP-INFERENCE",
        "ML-EXTRACTION",
    )
    default_threshold = 0.0

    ASKS: tuple[tuple[str, dict[str, Any]], ...] = (
        ("plain", {}),
        ("?scores=true", {"params": {"scores": "true"}}),
        ("?return_scores=1", {"params": {"return_scores": "1"}}),
        ("?include_scores=true&top_k=10", {"params": {"include_scores": "true", "top_k": "10"}}),
        ("?debug=true", {"params": {"debug": "true"}}),
        ("X-Return-Scores header", {"headers": {"X-Return-Scores": "true"}}),
        ("form field scores=true", {"data": {"scores": "true", "return_scores": "1"}}),
    )

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        target = gateway_target(context)
        roles = context.params.get("label_only_roles", ["end-user"])
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
            raise InputError("label_only_roles must be a list of role names", field="params.label_only_roles")
        rows: list[list[str]] = []
        leaks: list[str] = []
        answered = 0
        with target.client() as client:
            for role in roles:
                key = target.key(role)
                for ask, extra in self.ASKS:
                    headers = {**_bearer(key), **extra.get("headers", {})}
                    kwargs = {k: v for k, v in extra.items() if k != "headers"}
                    observed = send(client, "POST", PREDICT, headers=headers, files=_image_file(5), **kwargs)
                    found = _score_fields(observed.body) if observed.status == 200 else []
                    answered += observed.status == 200
                    if found:
                        leaks.append(f"{role} {ask}: {', '.join(found)}")
                    seen = f"{observed.describe()}; " + (f"scores: {', '.join(found)}" if found else "label only")
                    rows.append([f"{role}: {ask}", f"POST {PREDICT}", "label, no scores", seen])
            contrast = "not probed (no moderator key)"
            if target.has_key("moderator"):
                observed = send(client, "POST", PREDICT, headers=_bearer(target.key("moderator")), files=_image_file(5))
                contrast = f"{observed.describe()}; {_describe_scores(observed.body)}"
                rows.append(["moderator (contrast)", f"POST {PREDICT}", "per its output policy", contrast])
        threshold = self.threshold if self.threshold is not None else 0.0
        passed = answered > 0 and len(leaks) <= threshold
        if answered == 0:
            message = "no label-only prediction succeeded, so withholding could not be observed"
        else:
            message = f"{len(leaks)} of {answered} label-only predictions carried scores (tolerated: {threshold:g})"
        return Evidence(
            check=self.name,
            passed=passed,
            message=message,
            metrics={"leaks": float(len(leaks)), "answered": float(answered), "probes": float(len(rows))},
            threshold=threshold,
            details=[*_where(target), f"moderator sees: {contrast}", *(f"leak: {item}" for item in leaks)],
            tables=[_table("Score-withholding probes", rows)],
            failed_targets=_targets_if(not passed, targets),
        )


def _score_fields(body: Any, path: str = "") -> list[str]:
    """Fields of a prediction answer that reveal confidence: score-like names, or lists of fractions."""
    found: list[str] = []
    if isinstance(body, dict):
        for name, value in body.items():
            where = f"{path}.{name}" if path else str(name)
            if str(name).lower() in SCORE_KEYS and value not in (None, [], {}):
                found.append(where)
            else:
                found += _score_fields(value, where)
    elif isinstance(body, list) and body and all(isinstance(v, float) for v in body):
        found.append(path or "(list of numbers)")
    elif isinstance(body, float) and 0.0 < body < 1.0 and path:
        found.append(path)
    return found


def _describe_scores(body: Any) -> str:
    scores = body.get("scores") if isinstance(body, dict) else None
    if isinstance(scores, dict):
        scores = list(scores.values())
    if isinstance(scores, list):
        shown = sum(1 for v in scores if isinstance(v, int | float) and v != 0)
        return f"{len(scores)} scores ({shown} non-zero)"
    return "label only" if isinstance(body, dict) and "label" in body else "no prediction"


# --- uploads -----------------------------------------------------------------------------------


@register
class UploadsRefused(Check):
    """Oversized, bomb, truncated, polyglot and mislabelled uploads are refused with a reason; valid ones pass."""

    name = "gateway.uploads_refused"
    title = "The gateway refuses hostile uploads (size, decompression bombs, truncation, polyglots)"
    verifies = ("ML-SPONGE-DOS", "STRIDE-T-PROCESS", "STRIDE-D-PROCESS", "LLM-UNBOUNDED-CONSUMPTION")
    default_threshold = 1.0

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        target = gateway_target(context)
        oversize = int(number_param(context.params, "oversize_bytes", 8 * 1024 * 1024, low=1024, high=1 << 30))
        headers = _bearer(target.key("end-user"))
        rows: list[list[str]] = []
        slipped: list[str] = []
        refused = 0
        bad = bad_uploads(oversize)
        accepted = 0
        good = valid_uploads()
        with target.client() as client:
            for upload in bad:
                files = {"file": (upload.filename, upload.data, upload.content_type)}
                observed = send(client, "POST", PREDICT, headers=headers, files=files)
                if observed.refused:
                    refused += 1
                else:
                    slipped.append(f"{upload.name} ({upload.why}): {observed.describe()}")
                sent = f"{len(upload.data)} bytes as {upload.filename}"
                rows.append([upload.name, sent, "4xx + reason", observed.describe()])
            for name, (filename, data, content_type) in good.items():
                observed = send(
                    client, "POST", PREDICT, headers=headers, files={"file": (filename, data, content_type)}
                )
                accepted += observed.status == 200
                rows.append(
                    [f"{name} (control)", f"{len(data)} bytes as {filename}", "200", observed.describe() or "-"]
                )
        refused_fraction = refused / len(bad)
        accepted_valid = accepted / len(good)
        threshold = self.threshold if self.threshold is not None else 1.0
        passed = refused_fraction >= threshold and accepted_valid == 1.0
        return Evidence(
            check=self.name,
            passed=passed,
            message=(
                f"{refused} of {len(bad)} hostile uploads refused with a reason; "
                f"{accepted} of {len(good)} valid ones accepted"
            ),
            metrics={"refused_fraction": refused_fraction, "accepted_valid": accepted_valid},
            threshold=threshold,
            details=[*_where(target), *(f"not refused: {s}" for s in slipped)]
            + ([] if accepted_valid == 1.0 else ["a valid upload was refused: the filter blocks legitimate users"]),
            tables=[_table("Upload probes", rows)],
            failed_targets=_targets_if(not passed, targets),
        )


# --- the audit log -----------------------------------------------------------------------------


@register
class AuditChainValid(Check):
    """The audit log's hash chain and signed checkpoints verify, and every probe request is in it."""

    name = "gateway.audit_chain_valid"
    title = "The gateway's audit log is intact and records every request, refused or not"
    verifies = ("STRIDE-R-PROCESS", "STRIDE-R-STORE", "STRIDE-R-ENTITY")
    default_threshold = 0.0  # tolerated missing records

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        target = gateway_target(context)
        rounds = int(number_param(context.params, "requests", 5, low=1, high=1000))
        key = target.key("end-user")
        actor = key_prefix(key)
        rows: list[list[str]] = []
        with target.client() as client:
            before = self._verify(target, client) if not target.launched else None
            counted_before = self._count(target, actor) if target.launched else 0
            sent = 0
            for i in range(rounds):
                ok = send(client, "POST", PREDICT, headers=_bearer(key), files=_image_file(10 + i))
                refused = send(client, "GET", "/v1/keys", headers=_bearer(key))
                sent += 2
                if i == 0:
                    rows.append(["allowed request", f"POST {PREDICT}", "recorded (ok)", ok.describe()])
                    rows.append(["refused request", "GET /v1/keys", "recorded (forbidden)", refused.describe()])
            result = self._verify(target, client)
        if target.launched:
            recorded = self._count(target, actor) - counted_before
            how = f"records naming actor {actor}"
        else:
            recorded = int(result.get("records", 0)) - int((before or {}).get("records", 0))
            how = "growth of the log's record count"
        missing = max(sent - recorded, 0)
        valid = bool(result.get("valid"))
        authenticated = bool(result.get("authenticated"))
        threshold = self.threshold if self.threshold is not None else 0.0
        need_auth = target.audit_public_key is not None
        passed = valid and missing <= threshold and (authenticated or not need_auth)
        rows.append([f"{sent} probe requests", "-", f"≥ {sent} {how}", f"{recorded}"])
        rows.append(["chain and checkpoints", "verify", "valid, signatures authenticated", _verdict(result)])
        return Evidence(
            check=self.name,
            passed=passed,
            message=(
                f"audit log {'valid' if valid else 'INVALID'} ({result.get('records', '?')} records, "
                f"{result.get('checkpoints', '?')} checkpoints"
                + (", signatures authenticated" if authenticated else ", signatures not authenticated")
                + f"); {missing} of {sent} probe requests missing"
            ),
            metrics={
                "valid": float(valid),
                "authenticated": float(authenticated),
                "records": float(result.get("records", 0) or 0),
                "sent": float(sent),
                "missing": float(missing),
            },
            threshold=threshold,
            details=[*_where(target)]
            + ([f"first bad record: {result.get('first_bad_seq')}: {result.get('reason')}"] if not valid else [])
            + [f"warning: {w}" for w in result.get("warnings", []) or []],
            tables=[_table("Audit-log probes", rows)],
            failed_targets=_targets_if(not passed, targets),
        )

    @staticmethod
    def _count(target: GatewayTarget, actor: str) -> int:
        if target.audit_log is None:
            raise InputError("the launched gateway's audit log path is unknown", field="params.launch")
        try:
            return audit_actor_count(target.audit_log, actor)
        except (InputError, sqlite3.Error):
            return 0

    @staticmethod
    def _verify(target: GatewayTarget, client: Any) -> dict[str, Any]:
        if target.launched and target.audit_log is not None:
            args = ["audit-log", "verify", str(target.audit_log), "--format", "json"]
            if target.audit_public_key is not None:
                args += ["--public-key", str(target.audit_public_key)]
            result = cli(*args)
        else:
            observed = send(client, "GET", "/v1/audit-log/verify", headers=_bearer(target.key("auditor")))
            if observed.status != 200:
                raise InputError(f"GET /v1/audit-log/verify answered {observed.describe()} (needs an auditor key)")
            result = observed.body
        return result if isinstance(result, dict) else {"valid": False, "reason": f"unexpected answer {result!r}"}


def _verdict(result: dict[str, Any]) -> str:
    if not result.get("valid"):
        return f"invalid at record {result.get('first_bad_seq')}: {result.get('reason')}"
    return "valid, authenticated" if result.get("authenticated") else "valid, not authenticated"


# --- the model's signature ---------------------------------------------------------------------


@register
class ModelSignatureValid(Check):
    """The served model is the signed artifact: its signature verifies and its manifest is the one served."""

    name = "gateway.model_signature_valid"
    title = "The gateway serves a model whose signature verifies against a trusted key"
    verifies = (
        "ML-REGISTRY-TAMPERING",
        "ML-UNTRUSTED-PRETRAINED",
        "ML-UNSAFE-ARTIFACT",
        "STRIDE-T-STORE",
    )

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        from modelward.supplychain.signing import load_public_key, verify

        target = gateway_target(context)
        purpose = "ml-engineer" if target.has_key("ml-engineer") else "auditor"
        with target.client() as client:
            observed = send(client, "GET", "/v1/models", headers=_bearer(target.key(purpose)))
        if observed.status != 200 or not isinstance(observed.body, dict):
            raise InputError(f"GET /v1/models answered {observed.describe()} (needs an ml-engineer or auditor key)")
        current = observed.body.get("current") or {}
        artifact, keys = self._artifact_and_keys(context, target, current)
        verification = verify(artifact, [load_public_key(k) for k in keys])
        on_disk = manifest_sha256(artifact)
        served = str(current.get("manifest_sha256", ""))
        served_key = str(current.get("key_id", ""))
        same_digest = bool(served) and served == on_disk
        same_key = verification.key_id is not None and served_key == verification.key_id
        passed = verification.valid and same_digest and same_key
        rows = [
            [
                "served model",
                "GET /v1/models",
                "a version with digest and key id",
                f"{current.get('version')} ({current.get('artifact')})",
            ],
            [
                "signature",
                f"verify {artifact.name}",
                "valid against a trusted key",
                "valid" if verification.valid else "; ".join(verification.problems)[:300],
            ],
            ["manifest digest", "served vs. on disk", "equal", f"{served[:16]}… vs {on_disk[:16]}…"],
            ["signing key", "served vs. signature", "equal", f"{served_key or '-'} vs {verification.key_id or '-'}"],
        ]
        return Evidence(
            check=self.name,
            passed=passed,
            message=(
                f"served model {current.get('version')}: signature "
                + ("valid" if verification.valid else "INVALID")
                + (
                    "; served manifest matches the artifact"
                    if same_digest
                    else "; served manifest differs from the artifact"
                )
                + ("" if same_key else "; served key id differs from the signature's")
            ),
            metrics={"signature_valid": float(verification.valid), "digest_match": float(same_digest)},
            details=[
                *_where(target),
                f"artifact: {artifact}",
                *(f"problem: {p}" for p in verification.problems),
            ],
            tables=[_table("Model-signature probes", rows)],
            failed_targets=_targets_if(not passed, targets),
        )

    @staticmethod
    def _artifact_and_keys(
        context: CheckContext, target: GatewayTarget, current: dict[str, Any]
    ) -> tuple[Path, list[Path]]:
        base = Path(context.base_dir)
        params = context.params
        if "artifact_path" in params or not target.launched:
            if not isinstance(params.get("artifact_path"), str) or not isinstance(params.get("public_key"), str):
                raise InputError("url mode needs artifact_path and public_key (paths relative to the system file)")
            return (base / params["artifact_path"]).resolve(), [(base / params["public_key"]).resolve()]
        name = str(current.get("artifact", ""))
        if not name or target.models_dir is None:
            raise InputError("GET /v1/models named no current artifact")
        artifact = Path(name) if Path(name).is_absolute() else target.models_dir / name
        if not target.model_public_keys:
            raise InputError("the launched gateway's configuration names no model public key")
        return artifact, list(target.model_public_keys)


def manifest_sha256(artifact: Path) -> str:
    """SHA-256 of the canonical manifest in ``artifact``'s signature file (what the gateway reports as served)."""
    import json

    from modelward.supplychain.signing import canonical, signature_path_for

    try:
        document = json.loads(signature_path_for(artifact).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    manifest = document.get("manifest") if isinstance(document, dict) else None
    return hashlib.sha256(canonical(manifest)).hexdigest() if isinstance(manifest, dict) else ""
