"""Remove personal data and secrets from audit details before they are written.

An audit log is kept for years and read by many people, so it must not become a second copy of the
personal data and credentials that passed through the gateway (GDPR data minimisation). What is done:

- e-mail addresses become ``<email:HMAC>``: a keyed HMAC-SHA-256 (first 16 hex characters), so the same
  address can still be correlated across records by whoever holds the key, but not reversed or guessed
  by brute force from the log alone; without a key they become ``<email>``;
- IPv4 client addresses are truncated to their /24 network, IPv6 addresses to their /48 (enough for
  abuse analysis, no longer one household);
- bearer tokens, modelward API keys (``mw_<prefix>_<secret>``: the public prefix is kept) and the values
  of fields whose name looks like a secret (``password``, ``token``, ``api_key``...) are replaced;
- free-text fields named in a deny-list (``prompt``, ``body``, ``comment``...) keep only their length.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DEFAULT_DENY_FIELDS", "SECRET_FIELD_HINTS", "Redactor", "redact_url"]

#: Free-text fields whose content is never written, only its length.
DEFAULT_DENY_FIELDS: frozenset[str] = frozenset(
    {"prompt", "completion", "body", "text", "comment", "message", "input", "output", "query", "content"}
)
#: A field whose (lower-case) name contains one of these holds a secret.
SECRET_FIELD_HINTS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
)

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}")
_MW_KEY = re.compile(r"\b(mw_[0-9a-f]{12})_[A-Za-z0-9_\-]{16,}")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![0-9A-Za-z:])")
_REDACTED = "[redacted]"
_CACHE_SIZE = 4096  # distinct short strings remembered (client addresses, paths, model versions recur)
_CACHE_MAX_LEN = 256


class Redactor:
    """Applies the redaction rules to audit details (nested dicts and lists) and to single strings."""

    def __init__(
        self,
        hmac_key: bytes | None = None,
        *,
        deny_fields: Iterable[str] = DEFAULT_DENY_FIELDS,
        secret_hints: Iterable[str] = SECRET_FIELD_HINTS,
    ) -> None:
        self._key = hmac_key
        self._deny = frozenset(name.lower() for name in deny_fields)
        self._secret_hints = tuple(hint.lower() for hint in secret_hints)
        self._texts: dict[str, str] = {}  # redact_text is pure: short strings recur, so remember them
        self._fields: dict[str, str] = {}

    def redact(self, details: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of ``details`` (the input is not changed)."""
        return {str(key): self._value(str(key), value) for key, value in details.items()}

    def redact_text(self, text: str) -> str:
        """``text`` with e-mails, IP addresses, bearer tokens and API keys removed."""
        cached = self._texts.get(text)
        if cached is not None:
            return cached
        redacted, sensitive = self._redact_text(text)
        if len(text) <= _CACHE_MAX_LEN and not sensitive:  # no secret or e-mail address lingers as a cache key
            if len(self._texts) >= _CACHE_SIZE:
                self._texts.clear()  # bounded: a flood of distinct strings cannot grow memory
            self._texts[text] = redacted
        return redacted

    def _redact_text(self, text: str) -> tuple[str, bool]:
        """The redacted text, and whether a credential or e-mail pattern could be in it."""
        # Each pattern needs a character or word the cheap ``in`` tests look for; most audit strings
        # (paths, ids, outcomes) have none, so they skip the regular expressions (they run per request).
        lowered = text.lower()
        credential = "bearer" in lowered or "basic" in lowered or "token" in lowered
        sensitive = credential or "mw_" in text or "@" in text
        if "mw_" in text:
            text = _MW_KEY.sub(lambda m: f"{m.group(1)}_{_REDACTED}", text)
        if credential:
            text = _BEARER.sub(lambda m: f"{m.group(1)} {_REDACTED}", text)
        if "@" in text:
            text = _EMAIL.sub(lambda m: self._email(m.group(0)), text)
        if "." in text:
            text = _IPV4.sub(lambda m: _truncate_ip(m.group(0)), text)
        if ":" in text:
            text = _IPV6.sub(lambda m: _truncate_ip(m.group(0)), text)
        return text, sensitive

    def _field_kind(self, key: str) -> str:
        """``secret``, ``deny`` or ``keep`` for a field name (remembered: field names come from a small set)."""
        kind = self._fields.get(key)
        if kind is None:
            lowered = key.lower()
            if any(hint in lowered for hint in self._secret_hints):
                kind = "secret"
            else:
                kind = "deny" if lowered in self._deny else "keep"
            if len(self._fields) >= _CACHE_SIZE:
                self._fields.clear()
            self._fields[key] = kind
        return kind

    def _value(self, key: str, value: Any) -> Any:
        kind = self._field_kind(key)
        if kind == "secret":
            return _REDACTED
        if kind == "deny":
            return f"[redacted: {len(value)} chars]" if isinstance(value, str) else _REDACTED
        # cheapest tests first: most values are strings or numbers, and an ABC check (Mapping) is slow
        if isinstance(value, str):
            return self.redact_text(value)
        if value is None or isinstance(value, int | float):
            return value
        if isinstance(value, list | tuple):
            return [self._value(key, item) for item in value]
        if isinstance(value, Mapping):
            return self.redact(value)
        return value

    def _email(self, address: str) -> str:
        if self._key is None:
            return "<email>"
        digest = hmac.new(self._key, address.lower().encode("utf-8"), hashlib.sha256).hexdigest()
        return f"<email:{digest[:16]}>"


def _truncate_ip(candidate: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address; anything that is not an address is kept."""
    try:
        address = ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return candidate
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return "<unparseable URL>"
