"""Refusals: the one exception every protection raises, carrying the HTTP status and a stable reason code."""

from __future__ import annotations

from typing import Any

__all__ = ["Refusal"]


class Refusal(Exception):
    """A request the gateway will not serve: ``status`` (4xx/5xx), ``reason`` (stable code) and a message.

    ``headers`` carries extras such as ``Retry-After``; ``details`` adds safe context to the audit record.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        """The JSON error body: ``{"detail": {"reason": ..., "message": ...}}``."""
        return {"detail": {"reason": self.reason, "message": self.message}}
