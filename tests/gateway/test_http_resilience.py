"""End to end: a gateway killed with SIGKILL under load loses no acknowledged decision; fuzzing finds no 5xx.

Crash test: eight client threads send predictions while the server is SIGKILLed; after a restart on the same
files the audit log must verify and hold every decision id a client was given. Fuzzing: Schemathesis (its CLI,
``st run``) drives every operation of ``/openapi.json`` with a moderator key and checks ``not_a_server_error``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import GatewayProcess, auth, digit_png, gateway_template, make_gateway, recorded_decision_ids

THREADS = 8
LOAD_S = 2.0
KILL_AFTER_S = 1.0
GENEROUS = {"rate_per_s": 10_000, "burst": 10_000}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    template = gateway_template(tmp_path_factory, request.config.cache)
    folder = tmp_path_factory.mktemp("http-resilience") / "gateway"
    return make_gateway(template, folder, {"rate_limits": {"per_principal": GENEROUS, "per_address": GENEROUS}})


class _Load:
    """Client threads posting predictions until told to stop; they keep every decision id they were given."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.stop = threading.Event()
        self.acknowledged: list[str] = []
        self.refused: list[int] = []
        self.errors = 0
        self._lock = threading.Lock()
        self._png = digit_png(3)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/v1/predict/image", content=self._png, headers=auth(self.key))
                except httpx.TransportError:
                    with self._lock:
                        self.errors += 1
                    time.sleep(0.01)
                    continue
                with self._lock:
                    if response.status_code == 200:
                        self.acknowledged.append(response.json()["decision_id"])
                    else:
                        self.refused.append(response.status_code)


def test_sigkill_under_load_loses_no_acknowledged_decision(config: Path) -> None:
    gateway = GatewayProcess(config).start()
    try:
        key = gateway.quick_key("loadtester", "end-user")["key"]
        load = _Load(gateway.url, key)
        threads = [threading.Thread(target=load.run, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(KILL_AFTER_S)
        gateway.kill()
        time.sleep(LOAD_S - KILL_AFTER_S)
        load.stop.set()
        for thread in threads:
            thread.join(10)
    finally:
        gateway.stop()
    assert len(load.acknowledged) >= 20, f"too little load before the kill: {len(load.acknowledged)}"
    assert load.errors > 0, "the kill did not interrupt any request"
    assert not [s for s in load.refused if s >= 500], load.refused

    restarted = GatewayProcess(config, port=gateway.port).start()
    try:
        after = restarted.client().post("/v1/predict/image", content=digit_png(3), headers=auth(key))
        assert after.status_code == 200, after.text
    finally:
        assert restarted.stop() is not None
    result = restarted.verify_audit_log()
    assert result["valid"] is True, result
    missing = set(load.acknowledged) - recorded_decision_ids(restarted.audit_db)
    assert not missing, f"{len(missing)} of {len(load.acknowledged)} acknowledged decisions are not in the audit log"


@pytest.fixture(scope="module")
def running(config: Path) -> Iterator[GatewayProcess]:
    with GatewayProcess(config) as gateway:
        yield gateway


def test_schemathesis_finds_no_server_error(running: GatewayProcess, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis CLI (st) is not installed in this environment")
    key = running.quick_key("fuzzer", "moderator")["key"]
    command = [
        st,
        "run",
        f"{running.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "30",
        "--seed",
        "20240601",
        "--workers",
        "1",  # hypothesis parses lambda sources with ast, which is not thread-safe on CPython 3.11
        "--generation-database",
        "none",
        "--request-timeout",
        "15",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(  # nosec B603 - the venv's own schemathesis, fixed arguments
        command, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    operations = sum(len(item) for item in httpx.get(f"{running.url}/openapi.json").json()["paths"].values())
    tested = re.search(r"Tested:\s*(\d+)", output)
    assert tested is not None and int(tested.group(1)) == operations, output[-3000:]
    assert re.search(r"(\d+) generated, \1 passed", output), output[-3000:]
    assert key not in running.log_path.read_text(errors="replace")
