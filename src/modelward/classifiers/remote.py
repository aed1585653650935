"""A classifier behind an HTTP endpoint: black-box (scores or labels), every input counted as one query.

The wire protocol is deliberately small: ``POST`` a JSON object ``{"inputs": [...]}`` holding a batch
of inputs as nested lists, and receive ``{"scores": [[...], ...]}`` (one row of class scores per
input) or ``{"labels": [...]}`` (one class index per input). Only ``http``/``https`` URLs are
accepted, redirects are refused, and the query budget is enforced before anything is sent. Every
failure (HTTP status, timeout, refused connection, malformed body) becomes a one-line
``ClassifierError``, never a traceback; HTTP 429 (the endpoint's budget or rate limit is spent) is
:class:`QueryBudgetExceeded`, so attacks stop there cleanly as at a local budget. Only the standard
library is used for transport.
"""

from __future__ import annotations

import http.client
import ipaddress
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal

import numpy as np
import orjson
import torch

from modelward.classifiers.base import Capability, Classifier, ClassifierError, InputSpec, QueryBudgetExceeded

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Largest response body read from an endpoint; a larger one is refused rather than buffered."""

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turn every redirect into an HTTP error: a moved endpoint is reported, never followed silently."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (those bypass any configured HTTP proxy)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_url(url: str) -> urllib.parse.SplitResult:
    """Accept only absolute ``http``/``https`` URLs with a host and without embedded credentials."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ClassifierError(f"endpoint URL {url!r} is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ClassifierError(f"endpoint URL must use http or https, got {parts.scheme or 'no'} scheme in {url!r}")
    if not parts.hostname:
        raise ClassifierError(f"endpoint URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise ClassifierError("endpoint URL must not embed credentials; pass them in headers instead")
    return parts


class RemoteClassifier(Classifier):
    """A model served over HTTP, seen only through its scores or labels (no gradients).

    ``output="scores"`` offers ``scores`` and ``labels`` (the label is the top score);
    ``output="labels"`` offers ``labels`` only. ``input_shape``, ``bounds`` and ``num_classes``
    describe the endpoint's input domain, which is checked locally before any query is sent.
    Inputs go out in chunks of ``batch_size``; each input counts as one query whether or not the
    request then succeeds (a conservative count: the endpoint may have seen it).
    """

    def __init__(
        self,
        url: str,
        *,
        output: Literal["scores", "labels"],
        input_shape: Sequence[int],
        bounds: tuple[float, float],
        num_classes: int,
        query_budget: int | None = None,
        timeout: float = 10.0,
        batch_size: int = 256,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = _validate_url(url)
        if output not in ("scores", "labels"):
            raise ClassifierError(f"output must be 'scores' or 'labels', got {output!r}")
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ClassifierError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if batch_size < 1:
            raise ClassifierError(f"batch_size must be >= 1, got {batch_size}")
        spec = InputSpec(tuple(int(d) for d in input_shape), float(bounds[0]), float(bounds[1]))
        capabilities = {Capability.LABELS}
        if output == "scores":
            capabilities.add(Capability.SCORES)
        super().__init__(spec, int(num_classes), capabilities, query_budget)
        self.url = url
        self.output: Literal["scores", "labels"] = output
        self.timeout = float(timeout)
        self.batch_size = int(batch_size)
        self.requests_sent = 0
        self._where = f"{parts.scheme}://{parts.netloc}{parts.path}"  # no query string: it may hold a key
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **dict(headers or {})}
        handlers: list[urllib.request.BaseHandler] = [_RefuseRedirects()]
        if _is_loopback(parts.hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"RemoteClassifier({self._where!r}, output={self.output!r}, queries={self.queries})"

    # --- adapter hooks (inputs already checked and counted by the base class) -----------
    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        if self.output != "scores":  # pragma: no cover - the base class checks the capability first
            raise ClassifierError("this endpoint returns labels only")
        rows = [self._scores_chunk(x[i : i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(rows) if rows else torch.empty((0, self.num_classes))

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        if self.output == "scores":
            return self._probabilities(x).argmax(dim=1)
        rows = [self._labels_chunk(x[i : i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(rows) if rows else torch.empty((0,), dtype=torch.long)

    # --- transport and validation -------------------------------------------------------
    def _scores_chunk(self, x: torch.Tensor) -> torch.Tensor:
        payload = self._post(x)
        rows = payload.get("scores")
        n, c = x.shape[0], self.num_classes
        if not isinstance(rows, list) or len(rows) != n:
            raise self._malformed(f"'scores' must be a list of {n} rows, got {_describe(rows)}")
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != c:
                raise self._malformed(f"scores row {i} must be a list of {c} numbers, got {_describe(row)}")
            for value in row:
                if type(value) not in (int, float):
                    raise self._malformed(f"scores row {i} holds a non-numeric value {value!r}")
        scores = torch.tensor(rows, dtype=torch.float32)
        if not torch.isfinite(scores).all():
            raise self._malformed("scores contain NaN or infinite values")
        return scores

    def _labels_chunk(self, x: torch.Tensor) -> torch.Tensor:
        payload = self._post(x)
        labels = payload.get("labels")
        n, c = x.shape[0], self.num_classes
        if not isinstance(labels, list) or len(labels) != n:
            raise self._malformed(f"'labels' must be a list of {n} class indices, got {_describe(labels)}")
        out: list[int] = []
        for i, value in enumerate(labels):
            if type(value) is float and value.is_integer():
                value = int(value)
            if type(value) is not int or not 0 <= value < c:
                raise self._malformed(f"label {i} must be a class index in [0, {c}), got {value!r}")
            out.append(value)
        return torch.tensor(out, dtype=torch.long)

    def _post(self, x: torch.Tensor) -> dict[str, Any]:
        """Send one chunk and return the decoded JSON object, or raise a one-line ``ClassifierError``."""
        array = x.detach().cpu()
        if array.dtype not in (torch.float32, torch.float64):
            array = array.float()
        body = orjson.dumps({"inputs": np.ascontiguousarray(array.numpy())}, option=orjson.OPT_SERIALIZE_NUMPY)
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")  # noqa: S310
        self.requests_sent += 1
        try:
            # The scheme was validated to be http or https in __init__, so no file:// or custom opener
            # can be reached; redirects are refused by _RefuseRedirects.
            with self._opener.open(request, timeout=self.timeout) as response:  # nosec B310
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            message = f"endpoint {self._where} answered HTTP {exc.code}{_error_detail(exc)}"
            if exc.code == HTTPStatus.TOO_MANY_REQUESTS:
                # The endpoint's own budget or rate limit: a refusal attacks stop at cleanly, not a failure.
                raise QueryBudgetExceeded(message + _retry_after(exc)) from None
            raise ClassifierError(message) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise self._timed_out() from None
            raise ClassifierError(f"endpoint {self._where} unreachable: {reason}") from None
        except TimeoutError:
            raise self._timed_out() from None
        except (http.client.HTTPException, OSError) as exc:
            raise ClassifierError(f"endpoint {self._where} failed: {type(exc).__name__}: {exc}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise self._malformed(f"response exceeds {MAX_RESPONSE_BYTES} bytes")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise self._malformed(f"response is not valid JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise self._malformed(f"response must be a JSON object, got {_describe(payload)}")
        return payload

    def _malformed(self, what: str) -> ClassifierError:
        return ClassifierError(f"endpoint {self._where} sent a malformed response: {what}")

    def _timed_out(self) -> ClassifierError:
        return ClassifierError(f"endpoint {self._where} did not answer within {self.timeout:g} s")


def _describe(value: object) -> str:
    """A short description of a JSON value for error messages (never the whole value)."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The endpoint's own error message, when it sent a short JSON ``{"error": ...}`` body."""
    try:
        body = exc.read(4096)
        message = orjson.loads(body).get("error") if body else None
    except Exception:  # best effort: the status code alone is still reported
        return ""
    if isinstance(message, str) and message:
        return f": {message[:200]}"
    return ""


def _retry_after(exc: urllib.error.HTTPError) -> str:
    """The endpoint's ``Retry-After`` header (seconds or a date), when it sent one."""
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    text = "".join(ch for ch in str(value or "") if ch.isprintable()).strip()[:40]
    return f" (retry after {text})" if text else ""
