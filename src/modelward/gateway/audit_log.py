"""A tamper-evident audit log: append-only, hash-chained, with Ed25519-signed checkpoints.

Each record stores ``hash = SHA-256(canonical(seq, ts, actor, action, outcome, details, prev_hash))``
where ``prev_hash`` is the previous record's hash (64 zeros for the first). Editing, deleting, inserting
or reordering a record therefore breaks the chain at that record. An attacker who can write the file
could rewrite the whole chain after an edit; every ``checkpoint_every`` records (and on close) the
writer stores a checkpoint ``(seq, head hash)`` signed with an Ed25519 key the attacker does not hold,
so a rewritten chain no longer matches its signed checkpoints. Records after the last checkpoint are
reported as not yet anchored: dropping them cannot be told from never having written them.

Durability: SQLite in WAL mode with ``synchronous=FULL``; :meth:`AuditLog.append` returns only after its
transaction committed. :class:`BatchingWriter` groups the records of many threads into one transaction
(group commit, led by one of the waiting callers) and wakes each caller only after that commit, so
throughput is high and no acknowledged record can be lost. Personal data is removed by a
:class:`~modelward.gateway.redaction.Redactor` before anything is hashed or written.

Storage sits behind the small :class:`AuditStore` protocol so a PostgreSQL store can follow.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelward.core.errors import InputError
from modelward.gateway.redaction import Redactor
from modelward.supplychain.signing import key_id, load_public_key

__all__ = [
    "GENESIS_HASH",
    "AuditLog",
    "AuditRecord",
    "AuditStore",
    "BatchingWriter",
    "Checkpoint",
    "SQLiteAuditStore",
    "VerifyResult",
    "key_id",
    "load_public_key",
    "record_hash",
    "verify",
    "verify_store",
]

ChainBuilder = Callable[[int, str], tuple[Sequence["AuditRecord"], Sequence["Checkpoint"]]]
"""Given the head ``(seq, hash)`` read inside the write transaction, the records and checkpoints to add."""

GENESIS_HASH = "0" * 64
_CHECKPOINT_DOMAIN = b"modelward-audit-checkpoint-v1\x00"


@dataclass(frozen=True)
class AuditRecord:
    """One committed entry of the log."""

    seq: int
    ts: str
    actor: str
    action: str
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    #: the canonical JSON of ``details`` when the writer already has it (encoded once per record, not per use)
    details_json: str = field(default="", compare=False, repr=False)

    def stored_details(self) -> str:
        """The JSON text a store keeps for ``details`` (the same bytes the hash covers)."""
        return self.details_json or canonical_details(self.details)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement "the chain up to ``seq`` ends in ``head_hash``"."""

    seq: int
    head_hash: str
    signature: bytes
    key_id: str


@dataclass(frozen=True)
class _Entry:
    actor: str
    action: str
    outcome: str
    details: dict[str, Any]
    details_json: str


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _canonical_text(value: Any) -> str:
    return _ENCODER.encode(value)  # one shared encoder: json.dumps with options builds a new one per call


def _canonical(value: Any) -> bytes:
    return _canonical_text(value).encode()


def record_hash(
    seq: int, ts: str, actor: str, action: str, outcome: str, details: Mapping[str, Any], prev_hash: str
) -> str:
    """SHA-256 (hex) over the canonical JSON encoding of a record's fields."""
    return hashlib.sha256(_canonical([seq, ts, actor, action, outcome, dict(details), prev_hash])).hexdigest()


def _record_hash_encoded(
    seq: int, ts: str, actor: str, action: str, outcome: str, details_json: str, prev_hash: str
) -> str:
    """:func:`record_hash` for details already in canonical JSON: the list's encoding is its items' joined by commas."""
    fields = (str(seq), _canonical_text(ts), _canonical_text(actor), _canonical_text(action))
    text = f"[{','.join(fields)},{_canonical_text(outcome)},{details_json},{_canonical_text(prev_hash)}]"
    return hashlib.sha256(text.encode()).hexdigest()


def _checkpoint_message(seq: int, head_hash: str) -> bytes:
    return _CHECKPOINT_DOMAIN + _canonical([seq, head_hash])


class AuditStore(Protocol):
    """Where records and checkpoints live. Implementations commit each call atomically."""

    def head(self) -> tuple[int, str]:
        """The last sequence number and hash (``(0, GENESIS_HASH)`` when empty)."""
        ...

    def append(self, records: Sequence[AuditRecord], checkpoints: Sequence[Checkpoint]) -> None:
        """Write records and checkpoints in one durable transaction."""
        ...

    def append_chained(self, build: ChainBuilder) -> list[AuditRecord]:
        """Hold the store's write lock, read the head, write what ``build(seq, hash)`` returns, commit.

        This is what keeps one chain when several processes (replicas) write the same store.
        """
        ...

    def records(self) -> Iterator[AuditRecord]:
        """Every record, by increasing sequence number."""
        ...

    def tail(self, limit: int, action: str | None = None) -> list[AuditRecord]:
        """The newest ``limit`` records (of ``action`` when given), newest first."""
        ...

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, by increasing sequence number."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    outcome TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY, head_hash TEXT NOT NULL, signature BLOB NOT NULL, key_id TEXT NOT NULL
);
"""


_SELECT_RECORDS = "SELECT seq, ts, actor, action, outcome, details, prev_hash, hash FROM audit_records"


def record_from_row(row: Sequence[Any]) -> AuditRecord:
    """An :class:`AuditRecord` from a ``(seq, ts, actor, action, outcome, details-json, prev_hash, hash)`` row.

    Unparseable details are kept visibly (not dropped) so :func:`verify` reports the record as altered.
    """
    seq, ts, actor, action, outcome, details, prev_hash, digest = row
    try:
        parsed = json.loads(details)
    except (TypeError, ValueError):
        parsed = {"__unparseable__": str(details)}
    if not isinstance(parsed, dict):
        parsed = {"__not_an_object__": parsed}
    return AuditRecord(int(seq), str(ts), str(actor), str(action), str(outcome), parsed, str(prev_hash), str(digest))


def canonical_details(details: Mapping[str, Any]) -> str:
    """The JSON text stores keep for a record's details (the same bytes the hash covers)."""
    return _canonical_text(details)


class SQLiteAuditStore:
    """:class:`AuditStore` in one SQLite file (WAL, ``synchronous=FULL``). ``readonly`` never creates."""

    def __init__(self, path: Path | str, *, readonly: bool = False, synchronous: str = "full") -> None:
        if synchronous not in ("full", "normal"):
            raise InputError(f"synchronous must be full or normal, got {synchronous!r}")
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.is_file():
                    raise InputError("no such audit log", file=str(self.path))
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
                tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not {"audit_records", "audit_checkpoints"} <= tables:
                    self._db.close()
                    raise InputError("not a modelward audit log (tables missing)", file=str(self.path))
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                # FULL survives power loss; NORMAL (in WAL mode) survives a crashed or killed process.
                self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
                self._db.executescript(_SCHEMA)
                self._db.execute(
                    "INSERT OR IGNORE INTO audit_meta (name, value) VALUES ('format', 'modelward-audit-log-v1')"
                )
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not a modelward audit log ({exc})", file=str(self.path)) from exc

    def head(self) -> tuple[int, str]:
        row = self._db.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def append(self, records: Sequence[AuditRecord], checkpoints: Sequence[Checkpoint]) -> None:
        self.append_chained(lambda _seq, _hash: (records, checkpoints))

    def append_chained(self, build: ChainBuilder) -> list[AuditRecord]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            records, checkpoints = build(*self.head())
            self._db.executemany(
                "INSERT INTO audit_records (seq, ts, actor, action, outcome, details, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.seq, r.ts, r.actor, r.action, r.outcome, r.stored_details(), r.prev_hash, r.hash) for r in records],
            )
            if checkpoints:  # one in checkpoint_every transactions carries one
                self._db.executemany(
                    "INSERT OR IGNORE INTO audit_checkpoints (seq, head_hash, signature, key_id) VALUES (?, ?, ?, ?)",
                    [(c.seq, c.head_hash, c.signature, c.key_id) for c in checkpoints],
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return list(records)

    def records(self) -> Iterator[AuditRecord]:
        cursor = self._db.execute(f"{_SELECT_RECORDS} ORDER BY seq")
        for row in cursor:
            yield record_from_row(row)

    def tail(self, limit: int, action: str | None = None) -> list[AuditRecord]:
        if action is None:
            rows = self._db.execute(f"{_SELECT_RECORDS} ORDER BY seq DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(f"{_SELECT_RECORDS} WHERE action = ? ORDER BY seq DESC LIMIT ?", (action, limit))
        return [record_from_row(row) for row in rows.fetchall()]

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._db.execute("SELECT seq, head_hash, signature, key_id FROM audit_checkpoints ORDER BY seq")
        return [Checkpoint(int(s), str(h), bytes(sig), str(k)) for s, h, sig, k in rows]

    def close(self) -> None:
        self._db.close()


class AuditLog:
    """Appends redacted, hash-chained records; signs a checkpoint every ``checkpoint_every`` records.

    Several writers (threads, processes, replicas) may share one store: the head is read inside the
    store's write transaction (:meth:`AuditStore.append_chained`), so the chain never forks. Thread-safe.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        store: AuditStore | None = None,
        signing_key: Ed25519PrivateKey | None = None,
        checkpoint_every: int = 100,
        redactor: Redactor | None = None,
    ) -> None:
        if (path is None) == (store is None):
            raise InputError("give exactly one of path or store")
        if checkpoint_every < 1:
            raise InputError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        self._store: AuditStore = store if store is not None else SQLiteAuditStore(path)  # type: ignore[arg-type]
        self._key = signing_key
        self._key_id = key_id(signing_key.public_key()) if signing_key is not None else ""
        self._every = checkpoint_every
        self._redactor = redactor if redactor is not None else Redactor()
        self._lock = threading.Lock()

    def append(self, actor: str, action: str, outcome: str, details: Mapping[str, Any] | None = None) -> AuditRecord:
        """Write one record; returns after it is committed."""
        return self.append_many([(actor, action, outcome, details)])[0]

    def append_many(self, entries: Sequence[tuple[str, str, str, Mapping[str, Any] | None]]) -> list[AuditRecord]:
        """Write several records in one transaction; returns after the commit."""
        prepared = [self._prepare(*entry) for entry in entries]
        return self._commit(prepared)

    def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint at the current head now (no-op without a key or when already checkpointed)."""
        with self._lock:
            seq, head = self._store.head()
            if self._key is None or seq == 0:
                return None
            existing = self._store.checkpoints()
            if existing and existing[-1].seq >= seq:
                return None
            point = self._sign(seq, head)
            self._store.append([], [point])
            return point

    def close(self) -> None:
        """Write a final checkpoint (when signing) and close the store."""
        self.checkpoint()
        self._store.close()

    def _prepare(self, actor: str, action: str, outcome: str, details: Mapping[str, Any] | None) -> _Entry:
        for name, value in (("actor", actor), ("action", action), ("outcome", outcome)):
            if not isinstance(value, str) or not value:
                raise InputError(f"{name} must be a non-empty string")
        clean = self._redactor.redact(details or {})
        try:
            encoded = _canonical_text(clean)
        except (TypeError, ValueError) as exc:
            raise InputError(f"details must be JSON-serialisable: {exc}") from exc
        return _Entry(self._redactor.redact_text(actor), action, outcome, clean, encoded)

    def _sign(self, seq: int, head_hash: str) -> Checkpoint:
        if self._key is None:  # pragma: no cover - callers check
            raise InputError("no signing key")
        return Checkpoint(seq, head_hash, self._key.sign(_checkpoint_message(seq, head_hash)), self._key_id)

    def _commit(self, entries: Sequence[_Entry]) -> list[AuditRecord]:
        def build(seq: int, prev: str) -> tuple[list[AuditRecord], list[Checkpoint]]:
            records: list[AuditRecord] = []
            points: list[Checkpoint] = []
            for entry in entries:
                seq += 1
                ts = datetime.now(UTC).isoformat(timespec="microseconds")
                digest = _record_hash_encoded(
                    seq, ts, entry.actor, entry.action, entry.outcome, entry.details_json, prev
                )
                records.append(
                    AuditRecord(
                        seq,
                        ts,
                        entry.actor,
                        entry.action,
                        entry.outcome,
                        entry.details,
                        prev,
                        digest,
                        entry.details_json,
                    )
                )
                prev = digest
                if self._key is not None and seq % self._every == 0:
                    points.append(self._sign(seq, digest))
            return records, points

        with self._lock:
            return self._store.append_chained(build)


@dataclass
class _Pending:
    entry: _Entry
    done: bool = False  # set by the leader under the writer's condition; read by its own caller
    record: AuditRecord | None = None
    error: BaseException | None = None


class BatchingWriter:
    """Group commit: records from many threads share transactions, and each caller returns only after its commit.

    No background thread: the first caller to find no commit in progress becomes the leader, waits up to
    ``max_delay_ms`` for company, then commits everything queued (up to ``max_batch`` per transaction) in its
    own thread and wakes the callers whose records went in. Callers arriving during a commit queue up and
    form the next group. An idle writer therefore commits inline, with no thread hand-off, and batches grow
    with load.
    """

    def __init__(self, log: AuditLog, *, max_delay_ms: float = 0.0, max_batch: int = 256) -> None:
        if max_batch < 1 or max_delay_ms < 0:
            raise InputError("max_batch must be >= 1 and max_delay_ms >= 0")
        self._log = log
        self._delay = max_delay_ms / 1000.0
        self._max = max_batch
        self._cond = threading.Condition()
        self._waiting: list[_Pending] = []
        self._leading = False
        self._closed = False
        self.batches = 0

    def append(self, actor: str, action: str, outcome: str, details: Mapping[str, Any] | None = None) -> AuditRecord:
        """Queue one record and block until it is committed; returns the committed record."""
        if self._closed:
            raise InputError("the batching writer is closed")
        pending = _Pending(self._log._prepare(actor, action, outcome, details))
        with self._cond:
            self._waiting.append(pending)
            while self._leading and not pending.done:
                self._cond.wait()
            if not pending.done:
                self._leading = True
        if not pending.done:
            self._lead(pending)
        if pending.error is not None:
            raise pending.error
        if pending.record is None:  # pragma: no cover - a commit always sets one or the other
            raise InputError("audit record was not written")
        return pending.record

    def _lead(self, own: _Pending) -> None:
        try:
            if self._delay:
                time.sleep(self._delay)
            while not own.done:
                with self._cond:
                    group = self._waiting[: self._max]
                    del self._waiting[: self._max]
                self._commit(group)
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()

    def _commit(self, group: list[_Pending]) -> None:
        try:
            records = self._log._commit([p.entry for p in group])
        except BaseException as exc:  # handed to every caller of the group
            for p in group:
                p.error = exc
        else:
            self.batches += 1
            for p, record in zip(group, records, strict=True):
                p.record = record
        with self._cond:
            for p in group:
                p.done = True
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse new records; those already queued are committed by their callers. The log stays open."""
        self._closed = True


@dataclass
class VerifyResult:
    """What :func:`verify` found. ``first_bad_seq`` and ``reason`` say where and why when not ``valid``."""

    valid: bool
    records: int
    checkpoints: int
    last_checkpoint_seq: int
    unanchored_tail: int
    authenticated: bool
    first_bad_seq: int | None = None
    reason: str | None = None
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def verify(path: Path | str, public_key: Ed25519PublicKey | None = None) -> VerifyResult:
    """Check the chain and the checkpoints of the log at ``path``.

    Without ``public_key`` checkpoint signatures cannot be authenticated (an attacker who rewrote the
    chain could also re-sign it with their own key); the chain and head hashes are still checked and a
    warning says so. :class:`InputError` when the file is missing or not an audit log.
    """
    store = SQLiteAuditStore(path, readonly=True)
    try:
        return verify_store(store, public_key)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"not a modelward audit log ({exc})", file=str(path)) from exc
    finally:
        store.close()


def verify_store(store: AuditStore, public_key: Ed25519PublicKey | None) -> VerifyResult:
    """:func:`verify` for any :class:`AuditStore` (a PostgreSQL one, say)."""
    points = store.checkpoints()
    expected_key = key_id(public_key) if public_key is not None else None
    result = VerifyResult(
        valid=True,
        records=0,
        checkpoints=len(points),
        last_checkpoint_seq=points[-1].seq if points else 0,
        unanchored_tail=0,
        authenticated=public_key is not None and bool(points),
    )

    def fail(seq: int, reason: str, *, truncated: bool = False) -> VerifyResult:
        result.valid, result.first_bad_seq, result.reason, result.truncated = False, seq, reason, truncated
        return result

    # Signatures first: a forged checkpoint is reported as such, whatever the chain says.
    for point in points:
        if public_key is None:
            continue
        if point.key_id != expected_key:
            return fail(point.seq, f"checkpoint at seq {point.seq} is signed by key {point.key_id}, not {expected_key}")
        try:
            public_key.verify(point.signature, _checkpoint_message(point.seq, point.head_hash))
        except InvalidSignature:
            return fail(point.seq, f"checkpoint at seq {point.seq} has an invalid signature (forged checkpoint)")

    by_seq = {p.seq: p for p in points}
    anchored_from = 1  # the first record not yet covered by a checked checkpoint
    expected_seq, prev = 1, GENESIS_HASH
    for record in store.records():
        if record.seq != expected_seq:
            if record.seq > expected_seq:
                return fail(expected_seq, f"record {expected_seq} is missing (next record is {record.seq})")
            return fail(record.seq, f"record {record.seq} is out of order (expected {expected_seq})")
        if record.prev_hash != prev:
            return fail(record.seq, f"record {record.seq} does not link to record {record.seq - 1} (prev_hash)")
        digest = record_hash(
            record.seq, record.ts, record.actor, record.action, record.outcome, record.details, record.prev_hash
        )
        if digest != record.hash:
            return fail(record.seq, f"record {record.seq} was modified (its hash does not match its content)")
        anchor = by_seq.get(record.seq)
        if anchor is not None:
            if anchor.head_hash != digest:
                return fail(
                    anchored_from,
                    f"chain rewritten: checkpoint at seq {record.seq} does not match the records "
                    f"{anchored_from}..{record.seq}",
                )
            anchored_from = record.seq + 1
        result.records += 1
        expected_seq, prev = expected_seq + 1, digest

    last = expected_seq - 1
    if result.last_checkpoint_seq > last:
        return fail(
            last + 1,
            f"log truncated: checkpoint at seq {result.last_checkpoint_seq} but the last record is {last}",
            truncated=True,
        )
    result.unanchored_tail = last - result.last_checkpoint_seq
    if result.unanchored_tail:
        result.warnings.append(
            f"{result.unanchored_tail} record(s) after the last checkpoint are not anchored: "
            "removing them could not be detected"
        )
    if not points and last:
        result.warnings.append("no checkpoints: a rewrite of the whole chain could not be detected")
    elif public_key is None and points:
        result.warnings.append("no public key given: checkpoint signatures were not authenticated")
    return result
