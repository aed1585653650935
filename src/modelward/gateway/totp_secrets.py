"""TOTP secrets sealed at rest: whoever reads the user store (a backup, a dump) cannot mint second factors.

A TOTP secret must be recoverable to check codes, so it cannot be hashed like a password; it is encrypted
with Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a key kept outside the database
(``auth.totp_encryption_key``, best given as ``env:NAME``). Sealed values carry a ``fernet:`` prefix, so
secrets written before a key was configured stay readable and are sealed the next time they are used.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from modelward.core.errors import InputError

__all__ = ["SEALED_PREFIX", "TotpSecretBox", "UnreadableSecret"]

SEALED_PREFIX = "fernet:"


class UnreadableSecret(InputError):
    """A sealed secret that this box cannot open (no key configured, or another key)."""


class TotpSecretBox:
    """Seals and opens TOTP secrets; without a key it stores them as given (and cannot open sealed ones)."""

    def __init__(self, key: str | bytes | None = None) -> None:
        self._fernet: Fernet | None = None
        if key:
            try:
                self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
            except (ValueError, TypeError):
                raise InputError(
                    "auth.totp_encryption_key must be a Fernet key (32 url-safe base64-encoded bytes); "
                    "make one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ) from None

    @property
    def sealing(self) -> bool:
        """Whether new secrets are stored encrypted."""
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        """What the store keeps for ``secret``: sealed when a key is configured, else the secret itself."""
        if self._fernet is None:
            return secret
        return SEALED_PREFIX + self._fernet.encrypt(secret.encode("ascii")).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret behind a stored value; :class:`UnreadableSecret` when it is sealed under no or another key."""
        if not self.is_sealed(stored):
            return stored
        if self._fernet is None:
            raise UnreadableSecret("TOTP secrets in the user store are encrypted: configure auth.totp_encryption_key")
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED_PREFIX).encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError):
            raise UnreadableSecret("a TOTP secret does not open with auth.totp_encryption_key (another key?)") from None

    @staticmethod
    def is_sealed(stored: str) -> bool:
        """Whether a stored value is an encrypted secret."""
        return stored.startswith(SEALED_PREFIX)
