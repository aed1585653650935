"""Benchmark: what the protective gateway costs beside the same model behind a bare FastAPI endpoint.

Each server runs as its own subprocess on loopback; this script is the load generator, a second process:
an asyncio client with one keep-alive connection per simulated client, sending pre-built HTTP/1.1 requests
(raw sockets, so the client spends as little CPU as Python allows; on a 2-core machine client and server still
share the cores). At each concurrency level (default 1, 8, 32 clients) it warms up for 2 s, then measures
10 s: throughput of 200 answers and p50/p99 latency. Servers:

(a) bare FastAPI (benchmarks/gateway/bare_app.py), (b) the full gateway: API-key auth, per-principal and
per-address rate limits (set high enough never to refuse), upload validation, output hardening (the
moderator policy: top-3 + rounding), audit log with ``synchronous=full``; (c) the same with
``synchronous=normal``; (d) the same as (b) with Redis rate limits, skipped when redis-server is missing.

The gateway is started by this script's ``--serve-gateway`` mode, which wires ``GatewayService`` +
``create_app`` + uvicorn exactly as ``modelward serve`` does and also answers "how many audit commits so
far" on stdin, so records per commit can be measured per level. After each gateway run the audit log is
checked with ``modelward audit-log verify`` and its ``predict-image`` ok records must be >= the 200 answers
acknowledged. Finally an in-process profile times each step of the protection chain and one request
through each ASGI app (no sockets) to say where the gateway's time goes.

Results go to benchmarks/results/gateway.{json,md}. Run it with

    make bench-gateway
    # or: python benchmarks/gateway/bench_gateway.py [--duration 10] [--warmup 2] [--levels 1,8,32] [--skip-redis]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import socket
import sqlite3
import statistics
import subprocess  # nosec B404 - starts our own servers
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "benchmarks" / "results"
MODELWARD = Path(sys.executable).with_name("modelward")
HIGH_LIMIT = {"rate_per_s": 1_000_000, "burst": 1_000_000}
READY_TIMEOUT_S = 60.0
TARGET_RATIO = 0.70
TARGET_ADDED_P50_MS = 2.0


# --- setup ---------------------------------------------------------------------------------------
def build_artifact(root: Path) -> dict[str, Path]:
    """Train (or load the cached) digits-cnn, save it as a signed artifact, make the audit key pair."""
    from modelward.checks.model_recipes import resolve_model
    from modelward.classifiers.store import save_model
    from modelward.supplychain.signing import generate_keypair, load_private_key, sign

    model_priv, model_pub, _ = generate_keypair(root / "keys" / "model")
    audit_priv, audit_pub, _ = generate_keypair(root / "keys" / "audit")
    resolved = resolve_model({"recipe": "digits-cnn"}, root)
    artifact = root / "models" / "digits-cnn"
    artifact.mkdir(parents=True)
    save_model(resolved.module, artifact / "model", resolved.metadata)
    (artifact / "serving.json").write_text(
        json.dumps({"input": "image-digits", "classes": [str(i) for i in range(10)]}), encoding="utf-8"
    )
    sign(artifact, load_private_key(model_priv))
    return {
        "models": root / "models",
        "artifact": artifact,
        "model_pub": Path(model_pub),
        "audit_priv": Path(audit_priv),
        "audit_pub": Path(audit_pub),
    }


def write_config(folder: Path, files: dict[str, Path], *, synchronous: str, redis: bool) -> tuple[Path, str]:
    """A gateway config in its own folder (fresh databases) and a moderator API key for it."""
    from modelward.gateway.config import load_config, open_stores
    from modelward.gateway.keys import KeyManager, Role

    folder.mkdir(parents=True)
    limits: dict[str, Any] = {"per_principal": HIGH_LIMIT, "per_address": HIGH_LIMIT, "daily_quota": None}
    if redis:
        limits.update(backend="redis", redis_url="env:BENCH_REDIS_URL")
    config = {
        "audit": {"signing_key": str(files["audit_priv"]), "synchronous": synchronous},
        "rate_limits": limits,
        "model": {
            "models_dir": str(files["models"]),
            "artifact": "digits-cnn",
            "public_keys": [str(files["model_pub"])],
        },
    }
    path = folder / "gateway.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
    stores = open_stores(load_config(path))
    try:
        key = KeyManager(stores.keys).create("bench-moderator", Role.MODERATOR).key
    finally:
        stores.close()
    return path, key


def digit_png() -> bytes:
    """One scikit-learn digit as a 32×32 grayscale PNG (what a client would upload)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    image = Image.fromarray((load_digits().images[0] / 16 * 255).astype("uint8")).resize((32, 32))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- servers -------------------------------------------------------------------------------------
@dataclass
class Server:
    """A server subprocess; ``stats()`` asks a gateway launcher for its audit commit count."""

    name: str
    process: subprocess.Popen[str]
    port: int
    audit_db: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stats(self) -> dict[str, int]:
        """Audit commits (batches) so far and records in the audit DB (gateway only)."""
        if self.audit_db is None or self.process.stdin is None or self.process.stdout is None:
            return {}
        with self.lock:
            self.process.stdin.write("stats\n")
            self.process.stdin.flush()
            batches = int(json.loads(self.process.stdout.readline())["batches"])
        with contextlib_closing(sqlite3.connect(self.audit_db)) as db:
            records = int(db.execute("SELECT count(*) FROM audit_records").fetchone()[0])
        return {"batches": batches, "records": records}

    def stop(self) -> int:
        """SIGTERM (the gateway closes its audit log cleanly), wait, return the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


@contextmanager
def contextlib_closing(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield db
    finally:
        db.close()


def start_server(name: str, command: list[str], log: Path, env: dict[str, str], audit_db: Path | None) -> Server:
    """Start a server and wait until it accepts connections."""
    port = free_port()
    with log.open("w") as err:
        process = subprocess.Popen(  # nosec B603 - our own interpreter and script
            [*command, "--port", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    server = Server(name, process, port, audit_db)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} did not listen within {READY_TIMEOUT_S} s")


def serve_gateway(config_path: Path, port: int) -> None:
    """``--serve-gateway``: the gateway wired as ``modelward serve`` wires it, plus a stdin stats channel."""
    import logging
    import signal

    import torch
    import uvicorn

    from modelward.gateway.app import create_app
    from modelward.gateway.config import load_config
    from modelward.gateway.service import GatewayService

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(config_path)
    config = config.model_copy(update={"server": config.server.model_copy(update={"port": port})})
    service = GatewayService(config)

    def answer_stats() -> None:
        for _line in sys.stdin:
            print(json.dumps({"batches": service.writer.batches}), flush=True)

    threading.Thread(target=answer_stats, daemon=True).start()

    def exit_on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(service),
                host=config.server.host,
                port=config.server.port,
                log_level="warning",
                access_log=False,
                timeout_keep_alive=5,
                server_header=False,
            )
        )
        signal.signal(signal.SIGTERM, exit_on_signal)
        server.run()
    finally:
        service.close()


# --- load generator ------------------------------------------------------------------------------
@dataclass
class Level:
    """What one concurrency level measured."""

    clients: int
    seconds: float
    ok: int = 0
    errors: int = 0
    acknowledged: int = 0  # 200 answers over warm-up and measurement (the audit log must hold them all)
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        return {
            "clients": self.clients,
            "requests_per_s": round(self.ok / self.seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "ok": self.ok,
            "errors": self.errors,
            "acknowledged": self.acknowledged,
        }


def http_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One pre-built HTTP/1.1 keep-alive POST."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _client(port: int, request: bytes, warm_until: float, stop_at: float, level: Level) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                level.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            finished = time.perf_counter()
            status = int(head[9:12])
            if status == 200:
                level.acknowledged += 1
            if started < warm_until:
                continue
            if status == 200:
                level.ok += 1
                level.latencies_ms.append((finished - started) * 1000.0)
            else:
                level.errors += 1
    finally:
        writer.close()


async def _drive(port: int, request: bytes, clients: int, warmup: float, duration: float) -> Level:
    level = Level(clients, duration)
    now = time.perf_counter()
    warm_until, stop_at = now + warmup, now + warmup + duration
    await asyncio.gather(*(_client(port, request, warm_until, stop_at, level) for _ in range(clients)))
    return level


@dataclass
class Target:
    """One server under load: its process and the pre-built request it is sent."""

    server: Server
    request: bytes


def _audit_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    if not before or not after:
        return {}
    return {"records": after["records"] - before["records"], "commits": after["batches"] - before["batches"]}


def run_interleaved(
    targets: dict[str, Target], levels: list[int], warmup: float, duration: float, rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """Every level against every server, in ``rounds`` short segments taken in turn (A B C, B C A, ...).

    A shared machine drifts (other tenants, thermal and frequency changes) by more than the differences
    measured here; interleaving puts every server through the same drift, so their ratios hold even when
    the absolute numbers move. Each round yields one throughput per server, and per-round ratios are kept.
    """
    names = list(targets)
    segment = duration / rounds
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for clients in levels:
        merged = {name: Level(clients, 0.0) for name in names}
        per_round: dict[str, list[float]] = {name: [] for name in names}
        audit: dict[str, dict[str, float]] = {name: {"records": 0, "commits": 0} for name in names}
        for name in names:  # warm every server at this level first (its 200s still count as acknowledged)
            warm = asyncio.run(_drive(targets[name].server.port, targets[name].request, clients, warmup, 0.0))
            merged[name].acknowledged += warm.acknowledged
        for index in range(rounds):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                target = targets[name]
                before = target.server.stats()
                level = asyncio.run(_drive(target.server.port, target.request, clients, 0.2, segment))
                delta = _audit_delta(before, target.server.stats())
                for key, value in delta.items():
                    audit[name][key] += value
                m = merged[name]
                m.seconds += level.seconds
                m.ok += level.ok
                m.errors += level.errors
                m.acknowledged += level.acknowledged
                m.latencies_ms += level.latencies_ms
                per_round[name].append(level.ok / level.seconds)
        for name in names:
            row = merged[name].summary()
            row["per_round_rps"] = [round(r, 1) for r in per_round[name]]
            row["loadavg_1m"] = round(os.getloadavg()[0], 2)
            if audit[name]["commits"]:
                row["audit"] = {
                    "records": int(audit[name]["records"]),
                    "commits": int(audit[name]["commits"]),
                    "records_per_commit": round(audit[name]["records"] / audit[name]["commits"], 2),
                    "commits_per_s": round(audit[name]["commits"] / merged[name].seconds, 1),
                }
            out[name].append(row)
            shown = {k: v for k, v in row.items() if k != "per_round_rps"}
            print(f"  {name} c={clients}: {json.dumps(shown)}", flush=True)
    return out


def verify_audit(audit_db: Path, public_key: Path, acknowledged: int) -> dict[str, Any]:
    """``modelward audit-log verify`` on the stopped gateway's log, and records >= answers acknowledged."""
    done = subprocess.run(  # nosec B603 - our own CLI
        [str(MODELWARD), "audit-log", "verify", str(audit_db), "--public-key", str(public_key), "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    with contextlib_closing(sqlite3.connect(audit_db)) as db:
        predicted = int(
            db.execute("SELECT count(*) FROM audit_records WHERE action='predict-image' AND outcome='ok'").fetchone()[0]
        )
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        result = {"raw": done.stdout[-500:], "stderr": done.stderr[-500:]}
    return {
        "exit_code": done.returncode,
        "valid": done.returncode == 0 and bool(result.get("valid")),
        "records": result.get("records"),
        "checkpoints": result.get("checkpoints"),
        "predict_ok_records": predicted,
        "acknowledged": acknowledged,
        "records_cover_acknowledged": predicted >= acknowledged,
    }


# --- in-process profile --------------------------------------------------------------------------
def _timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return {"median_us": round(statistics.median(samples), 1), "mean_us": round(statistics.fmean(samples), 1)}


def profile(config_path: Path, key: str, artifact: Path, png: bytes, n: int) -> dict[str, Any]:
    """Time each step of the chain, one whole request through each ASGI app, and cProfile ``handle``."""
    import torch

    from modelward.gateway.app import create_app
    from modelward.gateway.config import load_config
    from modelward.gateway.identity import authorize
    from modelward.gateway.keys import Action
    from modelward.gateway.ratelimit import Bucket
    from modelward.gateway.service import GatewayService, RequestInfo
    from modelward.gateway.uploads import validate_digit_upload

    sys.path.insert(0, str(HERE))
    from bare_app import create_app as create_bare_app

    torch.set_num_threads(1)
    service = GatewayService(load_config(config_path))
    headers = {"authorization": f"Bearer {key}", "content-type": "image/png", "host": "127.0.0.1"}
    info = RequestInfo("predict-image", headers, "127.0.0.1", "/v1/predict/image", "POST")
    bucket = Bucket(rate_per_s=1e6, burst=1e6)
    principal = service.authenticate(headers)
    model = service.registry.current
    assert model is not None  # nosec B101 - deployed in the constructor
    x = validate_digit_upload(png, service.image_limits)

    def bare_decode() -> object:
        from PIL import Image

        return Image.open(io.BytesIO(png)).convert("L").resize((8, 8), Image.Resampling.BILINEAR).tobytes()

    details = {"path": info.path, "method": "POST", "client": "127.0.0.1", "status": 200}
    steps: dict[str, Callable[[], object]] = {
        "rate limits (address, principal, quota: one call)": lambda: service.limiter.hit_many(
            [("addr:x", bucket), ("principal:x", bucket), ("quota:x", bucket)]
        ),
        "authenticate (API key lookup + hash)": lambda: service.authenticate(headers),
        "authorize": lambda: authorize(principal, Action.PREDICT, mfa_code=None, users=service.users),
        "validate upload (gateway)": lambda: validate_digit_upload(png, service.image_limits),
        "decode only (as the bare app does)": bare_decode,
        "model forward (probabilities)": lambda: model.classifier.probabilities(x),
        "answer: forward + hardening + ids": lambda: service._answer(principal, model, x),
        "audit append (writer, commit + fsync)": lambda: service.writer.append("key:x", "bench", "ok", details),
        "metrics observe": lambda: service.metrics.observe("bench", "ok", 200, 0.001),
        "whole chain: service.handle": lambda: service.handle(
            info, Action.PREDICT, lambda p: service.predict_image(p, png)
        ),
    }
    for fn in steps.values():  # warm caches, JIT-free but first calls allocate
        for _ in range(20):
            fn()
    timings = {name: _timed(fn, n) for name, fn in steps.items()}

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        service.handle(info, Action.PREDICT, lambda p: service.predict_image(p, png))
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
    top = [line for line in text.getvalue().splitlines() if line.strip()][-14:]

    gateway_app = create_app(service)
    bare = create_bare_app(artifact)
    asgi = {
        "bare app": asyncio.run(_asgi_loop(bare, "/predict", png, {}, n)),
        "gateway app": asyncio.run(
            _asgi_loop(gateway_app, "/v1/predict/image", png, {"authorization": f"Bearer {key}"}, n)
        ),
    }
    service.close()
    return {"iterations": n, "steps": timings, "cprofile_handle_tottime": top, "asgi_request": asgi}


async def _asgi_loop(app: Any, path: str, body: bytes, headers: dict[str, str], n: int) -> dict[str, float]:
    """One request at a time straight into the ASGI app (no sockets, no h11): the server-side cost."""
    raw = [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))

    for _ in range(20):
        await app(dict(scope), receive, send)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await app(dict(scope), receive, send)
        samples.append((time.perf_counter() - t0) * 1e6)
    if set(statuses) != {200}:
        raise RuntimeError(f"{path}: unexpected statuses {sorted(set(statuses))}")
    return {"median_us": round(statistics.median(samples), 1), "mean_us": round(statistics.fmean(samples), 1)}


# --- report --------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import fastapi
    import h11
    import PIL
    import redis
    import redis.utils
    import torch
    import uvicorn

    cpu = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        import httptools  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

        http = "httptools"
    except ImportError:
        http = f"h11 {h11.__version__}"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "versions": {
            "fastapi": fastapi.__version__,
            "uvicorn": uvicorn.__version__,
            "torch": torch.__version__,
            "pillow": PIL.__version__,
            "redis-py": redis.__version__ + (" (hiredis)" if redis.utils.HIREDIS_AVAILABLE else ""),
        },
        "uvicorn_http": http,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def compare(runs: dict[str, Any], floors: list[str]) -> list[dict[str, Any]]:
    """Each gateway's throughput ratio (median of per-round ratios) and added p50 against each bare floor."""
    rows = []
    for floor in floors:
        if "levels" not in runs.get(floor, {}):
            continue
        base = {row["clients"]: row for row in runs[floor]["levels"]}
        for name, run in runs.items():
            if name.startswith("bare") or "levels" not in run:
                continue
            for row in run["levels"]:
                ref = base.get(row["clients"])
                if ref is None or not ref["requests_per_s"]:
                    continue
                ratios = [g / b for g, b in zip(row["per_round_rps"], ref["per_round_rps"], strict=True) if b]
                ratio = statistics.median(ratios)
                added = row["p50_ms"] - ref["p50_ms"]
                rows.append(
                    {
                        "server": name,
                        "floor": floor,
                        "clients": row["clients"],
                        "throughput_ratio": round(ratio, 3),
                        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                        "added_p50_ms": round(added, 3),
                        # capacity is judged under load (8+ clients); the added per-request cost where
                        # nothing queues (1 client): at one client throughput is 1 / latency, so the two
                        # targets would be one target there
                        "meets_ratio": ratio >= TARGET_RATIO if row["clients"] >= 8 else None,
                        "meets_p50": added <= TARGET_ADDED_P50_MS if row["clients"] == 1 else None,
                    }
                )
    return rows


FLOORS = {"bare": "(a)", "bare-same-threads": "(a')"}
LABELS = {
    "bare": "(a) bare FastAPI (anyio's default 40 threads)",
    "bare-same-threads": "(a') bare FastAPI, the gateway's inference thread count",
    "gateway-full": "(b) gateway, audit synchronous=full",
    "gateway-normal": "(c) gateway, audit synchronous=normal",
    "gateway-redis": "(d) gateway + Redis rate limits (full)",
}


def write_markdown(result: dict[str, Any], path: Path) -> None:
    """The results as a Markdown page in the house style."""
    m = result["machine"]
    v = m["versions"]
    p = result["params"]
    out = [
        "# Gateway benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (server: 1 uvicorn worker, 1 torch thread; the load generator "
        f"is a second process on the same cores), Python {m['python']}, fastapi {v['fastapi']}, uvicorn "
        f"{v['uvicorn']} ({m['uvicorn_http']}), torch {v['torch']}, Pillow {v['pillow']}, SQLite {m['sqlite']}, "
        f"redis-py {v.get('redis-py', '?')}; "
        f"{m['date']}.",
        "",
        "Regenerate with `make bench-gateway` (`python benchmarks/gateway/bench_gateway.py`).",
        "",
        f"One run, every server up at once. Each level ({p['clients_note']}): {p['warmup_s']:g} s warm-up per "
        f"server, then {p['duration_s']:g} s measured per server in {p['rounds']} interleaved segments taken in "
        "turn, so machine drift hits every server alike; ratios are the median of the per-segment ratios. One "
        f"{p['png_bytes']}-byte 32×32 PNG digit per request, raw body; the gateway caller is a moderator API key "
        "(top-3 + rounding hardening); rate limits set to 10⁶/s so none refuses. The gateway runs predictions on "
        f"{p['inference_threads']} threads (`server.inference_threads`, default one per core); (a') is the bare "
        "app held to the same number, (a) the bare app as FastAPI ships it.",
        "",
        "## Throughput and latency",
        "",
        "| server | clients | req/s | p50 ms | p99 ms | errors | audit records/commit | audit commits/s | load 1 min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in result["runs"].items():
        if "levels" not in run:
            continue
        for row in run["levels"]:
            audit = row.get("audit", {})
            out.append(
                f"| {LABELS[name]} | {row['clients']} | {row['requests_per_s']:.1f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {row['errors']} | {audit.get('records_per_commit', '–')} | "
                f"{audit.get('commits_per_s', '–')} | {row['loadavg_1m']:.2f} |"
            )
    skipped = [f"{LABELS[n]}: {r['skipped']}" for n, r in result["runs"].items() if "skipped" in r]
    if skipped:
        out += ["", "Skipped: " + "; ".join(skipped)]
    out += [
        "",
        f"## Against the targets (throughput ≥ {TARGET_RATIO:.0%} of bare under load, added p50 ≤ "
        f"{TARGET_ADDED_P50_MS:g} ms where nothing queues)",
        "",
        "Capacity is judged at 8 and 32 clients, per-request cost at 1 client: at one client throughput is just "
        "1 / latency, so there the two targets would be one. Each gateway is held against both bare floors; "
        "(a') is the stricter one.",
        "",
        "| server | floor | clients | × bare throughput (range) | added p50 ms | verdict |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in result["comparison"]:
        judged = (("throughput", row["meets_ratio"]), ("p50", row["meets_p50"]))
        checks = [(w, ok) for w, ok in judged if ok is not None]
        failed = [w for w, ok in checks if not ok]
        verdict = "meets " + " and ".join(w for w, _ in checks) if not failed else "misses " + " and ".join(failed)
        low, high = row["ratio_range"]
        out.append(
            f"| {LABELS[row['server']]} | {FLOORS[row['floor']]} | "
            f"{row['clients']} | {row['throughput_ratio']:.2f} ({low:.2f}–{high:.2f}) | "
            f"{row['added_p50_ms']:+.2f} | {verdict} |"
        )
    out += [
        "",
        "## Audit log checks",
        "",
        "`modelward audit-log verify` on each gateway's log after a clean stop; every acknowledged 200 must have "
        "its `predict-image` record.",
        "",
        "| server | verify | records | checkpoints | predict ok records | 200s acknowledged | covered |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, run in result["runs"].items():
        check = run.get("audit_verify")
        if check is None:
            continue
        out.append(
            f"| {LABELS[name]} | {'valid' if check['valid'] else 'INVALID'} | {check['records']} | "
            f"{check['checkpoints']} | {check['predict_ok_records']} | {check['acknowledged']} | "
            f"{'yes' if check['records_cover_acknowledged'] else 'NO'} |"
        )
    prof = result.get("profile")
    if prof:
        out += [
            "",
            f"## Where the time goes (in-process, one request at a time, {prof['iterations']} iterations, "
            "audit synchronous=full)",
            "",
            "| step | median µs | mean µs |",
            "|---|---:|---:|",
        ]
        for name, t in prof["steps"].items():
            out.append(f"| {name} | {t['median_us']:.1f} | {t['mean_us']:.1f} |")
        for name, t in prof["asgi_request"].items():
            out.append(
                f"| one request through the {name} (ASGI, no socket) | {t['median_us']:.1f} | {t['mean_us']:.1f} |"
            )
        out += ["", "cProfile of `service.handle` (own time; the audit commit runs in the calling thread):", "", "```"]
        out += prof["cprofile_handle_tottime"]
        out += ["```"]
    if result.get("notes"):
        out += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def notes(runs: dict[str, Any], prof: dict[str, Any] | None) -> list[str]:
    """Fixed caveats plus what the numbers say about the audit log and the chain's costs."""
    out = [
        "Client and server share the machine's cores: the asyncio load generator (one process, raw keep-alive "
        "sockets) takes CPU the server would otherwise use, equally for every server.",
        "Every server runs the model in a thread (the gateway's `service.handle`, the bare app's `predict`). "
        "Thread count matters on 2 cores: each torch op releases and retakes the GIL, and with more runnable "
        "threads than cores those hand-offs cost more CPU (system time) than the overlap wins. That is why the "
        "gateway bounds predictions to one thread per core, and why (a') holds the bare app to the same bound: "
        "against (a') the gap is the protections alone.",
        "The last column is the machine's 1-minute load average after each level: above ~2 (server + client) "
        "other processes were competing for the 2 cores and the level's numbers are pessimistic.",
        "The gateway launcher (`--serve-gateway`) wires `GatewayService` + `create_app` + uvicorn exactly like "
        "`modelward serve` and adds a stdin channel reporting `BatchingWriter.batches` (audit commits).",
    ]
    for name, run in runs.items():
        audit = [row["audit"] for row in run.get("levels", []) if row.get("audit", {}).get("records_per_commit")]
        if not audit:
            continue
        best = max(audit, key=lambda a: a["records_per_commit"])
        out.append(
            f"{LABELS[name]}: at most {best['records_per_commit']} records per commit "
            f"({best['commits_per_s']} commits/s); "
            + (
                "group commit is absorbing the load, the commit rate caps throughput."
                if best["records_per_commit"] >= 2
                else "commits rarely group, so requests reach the writer one at a time: the CPU, not the audit "
                "commit, is the bottleneck at these levels."
            )
        )
    if prof:
        steps = prof["steps"]
        asgi = prof["asgi_request"]
        bare_ms, gateway_ms = asgi["bare app"]["median_us"] / 1000, asgi["gateway app"]["median_us"] / 1000
        audit_us = steps["audit append (writer, commit + fsync)"]["median_us"]
        validate_us = steps["validate upload (gateway)"]["median_us"]
        decode_us = steps["decode only (as the bare app does)"]["median_us"]
        auth_us = steps["authenticate (API key lookup + hash)"]["median_us"]
        out.append(
            f"Server-side cost per request, one at a time: bare app {bare_ms:.2f} ms vs gateway {gateway_ms:.2f} ms; "
            f"inside the chain the audit commit takes {audit_us:.0f} µs, upload validation {validate_us:.0f} µs "
            f"(vs {decode_us:.0f} µs for the bare decode), API-key authentication {auth_us:.0f} µs."
        )
    return out


# --- main ----------------------------------------------------------------------------------------
def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, run every server at every level, verify the audit logs, profile; return the results."""
    from modelward.gateway.app import inference_threads
    from modelward.gateway.config import load_config

    levels = [int(c) for c in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    redis_server: Any = None
    redis_skip = ""
    try:
        files = build_artifact(work / "setup")
        png = digit_png()
        variants: dict[str, tuple[str, bool]] = {
            "gateway-full": ("full", False),
            "gateway-normal": ("normal", False),
        }
        if not args.skip_redis:
            sys.path.insert(0, str(ROOT / "tests" / "gateway"))
            try:
                from servers import ServerUnavailable, start_redis

                try:
                    redis_server = start_redis(work)
                    env["BENCH_REDIS_URL"] = redis_server.url
                    os.environ["BENCH_REDIS_URL"] = redis_server.url
                    variants["gateway-redis"] = ("full", True)
                except ServerUnavailable as exc:
                    redis_skip = str(exc)
            except ImportError as exc:
                redis_skip = f"tests/gateway/servers.py not importable ({exc})"
        runs: dict[str, Any] = {}
        servers: dict[str, Server] = {}
        targets: dict[str, Target] = {}
        try:
            threads = 0
            for name, (synchronous, redis) in variants.items():
                config, key = write_config(work / name, files, synchronous=synchronous, redis=redis)
                threads = inference_threads(load_config(config))
                servers[name] = start_server(
                    name,
                    [sys.executable, str(Path(__file__).resolve()), "--serve-gateway", str(config)],
                    work / f"{name}.log",
                    env,
                    work / name / "audit.db",
                )
                request = http_request(
                    "/v1/predict/image", png, {"Content-Type": "image/png", "Authorization": f"Bearer {key}"}
                )
                targets[name] = Target(servers[name], request)
            bare_request = http_request("/predict", png, {"Content-Type": "image/png"})
            bare_command = [sys.executable, str(HERE / "bare_app.py"), "--artifact", str(files["artifact"])]
            for name, extra in (("bare", []), ("bare-same-threads", ["--threads", str(threads)])):
                servers[name] = start_server(name, [*bare_command, *extra], work / f"{name}.log", env, None)
                targets[name] = Target(servers[name], bare_request)
            order = ["bare", "bare-same-threads", *variants]
            print(f"servers up: {', '.join(order)}; gateway inference threads: {threads}", flush=True)
            measured = run_interleaved(
                {name: targets[name] for name in order}, levels, args.warmup, args.duration, args.rounds
            )
        finally:
            codes = {name: server.stop() for name, server in servers.items()}
        for name in order:
            runs[name] = {"levels": measured[name], "exit_code": codes[name]}
            if name in variants:
                acknowledged = sum(row["acknowledged"] for row in measured[name])
                runs[name]["audit_verify"] = verify_audit(work / name / "audit.db", files["audit_pub"], acknowledged)
                print(f"  {name} audit: {json.dumps(runs[name]['audit_verify'])}", flush=True)
        if not args.skip_redis and "gateway-redis" not in variants:
            runs["gateway-redis"] = {"skipped": redis_skip}
        elif args.skip_redis:
            runs["gateway-redis"] = {"skipped": "--skip-redis"}
        prof = None
        if args.profile_iterations > 0:
            print("profile", flush=True)
            folder = work / "profile"
            config, key = write_config(folder, files, synchronous="full", redis=False)
            prof = profile(config, key, files["artifact"], png, args.profile_iterations)
        return {
            "machine": machine(),
            "params": {
                "levels": levels,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
                "rounds": args.rounds,
                "inference_threads": threads,
                "png_bytes": len(png),
                "clients_note": f"{', '.join(map(str, levels))} concurrent keep-alive clients",
            },
            "runs": runs,
            "comparison": compare(runs, ["bare", "bare-same-threads"]),
            "profile": prof,
            "notes": notes(runs, prof),
        }
    finally:
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 12 segments of 2 s: the median of per-segment ratios then moves less from run to run than with 6
    parser.add_argument("--duration", type=float, default=24.0, help="measured seconds per server and level")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved segments the duration is cut into")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per server and level")
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients per level, comma-separated")
    parser.add_argument("--skip-redis", action="store_true", help="do not run the Redis rate-limit variant")
    parser.add_argument("--profile-iterations", type=int, default=1000, help="in-process profile (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gateway.json and gateway.md")
    parser.add_argument("--serve-gateway", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_gateway is not None:
        serve_gateway(args.serve_gateway, args.port)
        return
    started = time.perf_counter()
    result = bench(args)
    result["params"]["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, args.out / "gateway.md")
    print(f"wrote {args.out / 'gateway.md'} in {result['params']['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
