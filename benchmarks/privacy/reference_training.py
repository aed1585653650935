"""Benchmark: training 16 reference models sequentially, on 2 local processes, and on Ray.

The workload is the membership benchmark's: 16 MLPs (hidden 256, 100 epochs) on random halves of
the generated 5,000-record tabular population, and 16 SmallCNNs (40 epochs) on halves of the
1,797 digits. Each engine trains the same specs from scratch (no cache); the table gives wall time,
speed-up over sequential, wall time per model, and whether the weights are bit-identical to the
sequential run (they must be: same seed, same weights, whichever engine). A last row reloads the
16 models from the safetensors cache. Ray's row includes starting and stopping its local runtime
(reported separately too).

Results go to benchmarks/results/privacy-reference-training.{json,md} with the machine:

    python benchmarks/privacy/reference_training.py [--models 16] [--workers 2] [--skip-ray] [--only mlp]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from membership import machine  # noqa: E402

from modelward.attacks.inference.reference_models import (  # noqa: E402
    ArtifactCache,
    LocalEngine,
    ModelSpec,
    RayEngine,
    ReferenceEngine,
    TrainedModel,
    reference_specs,
)
from modelward.datasets.builtin import load_digits_images  # noqa: E402
from modelward.datasets.synthetic import Population, make_tabular_population, population_from_split  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def workloads(only: str | None) -> list[tuple[str, str, Population, str, dict[str, int], int]]:
    rows = [
        ("mlp", "MLP (hidden 256, 100 epochs) on 2,500 tabular records each", make_tabular_population(5000, seed=0),
         "mlp", {"in_features": 20, "num_classes": 10, "hidden": 256}, 100),
        ("small-cnn", "SmallCNN (width 32, 40 epochs) on ~899 digit images each",
         population_from_split(load_digits_images()), "small-cnn", {"width": 32}, 40),
    ]  # fmt: skip
    return [r for r in rows if only is None or r[0] == only]


def identical(first: list[TrainedModel], second: list[TrainedModel]) -> bool:
    return all(
        a.state.keys() == b.state.keys() and all(torch.equal(a.state[k], b.state[k]) for k in a.state)
        for a, b in zip(first, second, strict=True)
    )


def timed(engine: ReferenceEngine, specs: list[ModelSpec], population: Population) -> tuple[float, list[TrainedModel]]:
    """Wall time of one engine training every spec."""
    started = time.perf_counter()
    models = engine.train(specs, population.x, population.y)
    return time.perf_counter() - started, models


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for name, title, population, factory, params, epochs in workloads(args.only):
        specs = reference_specs(len(population), args.models, factory, params, seed=3, epochs=epochs)
        print(f"{name}: {args.models} models", flush=True)
        rows: list[dict[str, Any]] = []
        seq_seconds, baseline = timed(LocalEngine(1), specs, population)
        per_model = [round(m.seconds, 3) for m in baseline]
        rows.append({"engine": "sequential (1 process)", "seconds": seq_seconds, "identical": True})
        print(f"  sequential        {seq_seconds:7.1f} s", flush=True)
        local_seconds, local = timed(LocalEngine(args.workers), specs, population)
        rows.append({"engine": f"local processes ({args.workers}, spawn)", "seconds": local_seconds,
                     "identical": identical(baseline, local)})  # fmt: skip
        print(f"  local x{args.workers}         {local_seconds:7.1f} s", flush=True)
        if not args.skip_ray and importlib.util.find_spec("ray") is not None:
            started = time.perf_counter()
            engine = RayEngine(args.workers)
            engine.start()  # start the runtime outside the timed training, then time both
            startup = time.perf_counter() - started
            ray_seconds, on_ray = timed(engine, specs, population)
            started = time.perf_counter()
            engine.close()
            shutdown = time.perf_counter() - started
            rows.append({"engine": f"Ray ({args.workers} CPUs, local runtime)", "seconds": ray_seconds,
                         "identical": identical(baseline, on_ray), "startup_seconds": round(startup, 2),
                         "shutdown_seconds": round(shutdown, 2)})  # fmt: skip
            print(f"  ray x{args.workers}           {ray_seconds:7.1f} s (+{startup:.1f} s start)", flush=True)
        with tempfile.TemporaryDirectory() as cache:
            store = ArtifactCache(cache)
            for model in baseline:  # the cache holds what the sequential run trained
                store.save("models", model.key, model.state, {"spec": json.dumps(model.spec.to_dict())})
            cached_seconds, cached = timed(LocalEngine(args.workers, cache_dir=cache), specs, population)
        rows.append({"engine": "cache hit (safetensors)", "seconds": cached_seconds,
                     "identical": identical(baseline, cached)})  # fmt: skip
        for r in rows:
            r["speedup"] = round(seq_seconds / r["seconds"], 2) if r["seconds"] > 0 else None
            r["seconds_per_model"] = round(r["seconds"] / args.models, 3)
            r["seconds"] = round(r["seconds"], 2)
        results.append({"name": name, "title": title, "models": args.models, "rows": rows,
                        "training_seconds_per_model_sequential": per_model})  # fmt: skip
    return {"machine": machine(), "workers": args.workers, "workloads": results}


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# Reference-model training benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Python {m['python']}, "
        f"torch {m['versions']['torch']}, ray {m['versions'].get('ray') or 'not installed'}; {m['date']}. "
        f"{m['note'].capitalize()}. Every worker trains on one torch thread; 2 workers on 2 cores bound the "
        "speed-up at 2×, less the workers' start-up (spawned interpreters import torch) and whatever else runs.",
        "",
        "Regenerate with `python benchmarks/privacy/reference_training.py`.",
    ]
    for workload in data["workloads"]:
        lines += [
            "",
            f"## {workload['models']} × {workload['title']}",
            "",
            "| engine | wall seconds | speed-up | seconds / model | weights identical to sequential |",
            "|---|---:|---:|---:|---|",
        ]
        for r in workload["rows"]:
            extra = f" (+{r['startup_seconds']:.1f} s runtime start)" if "startup_seconds" in r else ""
            speedup = "— (no training)" if r["engine"].startswith("cache") else f"{r['speedup']:.2f}×"
            lines.append(
                f"| {r['engine']} | {r['seconds']:.2f}{extra} | {speedup} | {r['seconds_per_model']:.3f} | "
                f"{'yes' if r['identical'] else 'NO'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16, help="reference models per workload (even)")
    parser.add_argument("--workers", type=int, default=2, help="local processes / Ray CPUs")
    parser.add_argument("--skip-ray", action="store_true", help="do not run the Ray engine")
    parser.add_argument("--only", choices=["mlp", "small-cnn"], default=None, help="run one workload")
    parser.add_argument("--out", default=str(RESULTS), help="folder for privacy-reference-training.{json,md}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = run(args)
    data["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "privacy-reference-training.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "privacy-reference-training.md").write_text(markdown(data), encoding="utf-8")
    print(f"wrote {out / 'privacy-reference-training.json'} and .md in {data['seconds']:.0f} s")


if __name__ == "__main__":
    main()
