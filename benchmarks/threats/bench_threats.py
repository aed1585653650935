"""Benchmark: `modelward threats` on a generated 2,000-element / 5,000-flow system, beside OWASP pytm.

Both tools get systems of the same shape (same element kinds, boundaries and flow pairs, seeded).
modelward runs as a user runs it, the whole command from a fresh process (start-up, YAML load,
validation, threats, rating, triage, output); pytm runs in-process (`TM.resolve()` only: its
fairest, fastest path). Results go to benchmarks/results/threats.{json,md} with the machine.

    python benchmarks/threats/bench_threats.py [--repeat 3] [--skip-pytm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from generate import generate  # noqa: E402

TARGET_SECONDS = 5.0


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def time_modelward(system_dir: Path, fmt: str, repeat: int) -> dict[str, Any]:
    """Wall time of the whole `modelward threats` command, from a fresh process each run."""
    times = []
    findings = None
    for _ in range(repeat):
        out = system_dir / f"out.{fmt}"
        args = [sys.executable, "-m", "modelward.cli", "threats", str(system_dir), "--format", fmt]
        started = time.perf_counter()
        if fmt == "table":
            result = subprocess.run(args, capture_output=True, text=True, check=False)
        else:
            result = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"modelward failed: {result.stderr.strip()}")
        if fmt == "json":
            findings = len(json.loads(out.read_text())["findings"])
    return {
        "format": fmt,
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "findings": findings,
    }


def time_pytm(system: dict[str, Any], repeat: int) -> dict[str, Any] | None:
    """Wall time of pytm's `TM.resolve()` on a system of the same shape, in-process."""
    try:
        import pytm
        from pytm import TM, Actor, Boundary, Dataflow, Datastore, Process
    except ImportError:
        return None
    from importlib.metadata import version

    times = []
    findings = 0
    for _ in range(repeat):
        TM.reset()
        tm = TM("bench")
        tm.description = "generated"
        tm.isOrdered = False
        boundaries = {b["id"]: Boundary(b["id"]) for b in system["boundaries"]}
        kinds = {
            "end-user": Actor,
            "external-service": Actor,
            "data-provider": Actor,
            "public-dataset": Actor,
            "labeler": Actor,
        }
        stores = {"dataset", "feature-store", "model-registry", "log-store", "vector-index", "database"}
        elements = {}
        for item in system["elements"]:
            cls = kinds.get(item["type"]) or (Datastore if item["type"] in stores else Process)
            element = cls(item["id"])
            element.inBoundary = boundaries[item["boundary"]]
            elements[item["id"]] = element
        for flow in system["flows"]:
            Dataflow(elements[flow["from"]], elements[flow["to"]], flow["id"])
        started = time.perf_counter()
        tm.resolve()
        times.append(time.perf_counter() - started)
        findings = len(tm.findings)
    return {
        "version": version("pytm"),
        "module": pytm.__name__,
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "findings": findings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=2000)
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-pytm", action="store_true")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    system = generate(args.elements, args.flows)
    with tempfile.TemporaryDirectory() as folder:
        system_dir = Path(folder)
        (system_dir / "modelward.yaml").write_text(yaml.safe_dump(system, sort_keys=False))
        size = (system_dir / "modelward.yaml").stat().st_size
        runs = [time_modelward(system_dir, fmt, args.repeat) for fmt in ("json", "sarif", "table")]
    pytm_result = None if args.skip_pytm else time_pytm(system, args.repeat)

    slowest = max(run["median_s"] for run in runs)
    result = {
        "benchmark": "threats",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "system": {"elements": args.elements, "flows": args.flows, "yaml_bytes": size},
        "target_s": TARGET_SECONDS,
        "modelward": runs,
        "pytm": pytm_result,
        "meets_target": slowest < TARGET_SECONDS,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "threats.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Threats benchmark",
        "",
        f"{result['date']} on {result['machine']['cpu']} ({result['machine']['cores']} cores, "
        f"{result['machine']['memory']}), Python {result['machine']['python']}.",
        "",
        f"Generated system: {args.elements:,} elements, {args.flows:,} flows ({size:,} bytes of YAML). "
        f"Target: the whole command under {TARGET_SECONDS:g} s.",
        "",
        "| tool | what is timed | median (s) | runs (s) | findings |",
        "|---|---|---:|---|---:|",
    ]
    for run in runs:
        lines.append(
            f"| modelward | `modelward threats --format {run['format']}` (whole command, fresh process) | "
            f"{run['median_s']} | {', '.join(map(str, run['runs_s']))} | {run['findings'] or '-'} |"
        )
    if pytm_result is not None:
        lines.append(
            f"| pytm {pytm_result['version']} | `TM.resolve()` only (in-process, no output) | "
            f"{pytm_result['median_s']} | {', '.join(map(str, pytm_result['runs_s']))} | {pytm_result['findings']} |"
        )
    lines += ["", f"Meets target: **{'yes' if result['meets_target'] else 'no'}**.", ""]
    (args.results / "threats.md").write_text("\n".join(lines))
    print("\n".join(lines))
    if not result["meets_target"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
