"""Generate a large, realistic-looking ML system file for the threats benchmark (seeded)."""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import yaml

ENTITY_TYPES = ["end-user", "external-service", "data-provider", "public-dataset", "labeler"]
PROCESS_TYPES = ["service", "api", "model", "inference-service", "training-pipeline", "llm", "process"]
STORE_TYPES = ["dataset", "feature-store", "model-registry", "log-store", "vector-index", "database"]
ORIGINS = ["user-supplied", "crowdsourced", "telemetry", "public", "internal", "third-party"]
CONTROLS = ["rate-limiting", "input-validation", "adversarial-training", "data-sanitization", "audit-logging"]


def generate(elements: int, flows: int, seed: int = 7) -> dict[str, Any]:
    """A system with ``elements`` elements and ``flows`` flows across nested boundaries."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not security
    boundaries: list[dict[str, Any]] = [{"id": "internet", "trust": "untrusted"}, {"id": "cloud", "trust": "internal"}]
    for i in range(40):
        boundaries.append({"id": f"zone-{i}", "trust": rng.choice(["internal", "partner"]), "parent": "cloud"})
    data = []
    for i in range(200):
        personal = rng.random() < 0.4
        asset: dict[str, Any] = {
            "id": f"data-{i}",
            "classification": rng.choice(["public", "internal", "confidential", "restricted"]),
            "origin": rng.choice(ORIGINS),
            "personal": personal,
        }
        if personal:
            asset.update(data_subjects=rng.choice([50, 5_000, 2_000_000]), purpose="service", retention="1 year")
        data.append(asset)
    items: list[dict[str, Any]] = []
    for i in range(elements):
        roll = rng.random()
        kind = ENTITY_TYPES if roll < 0.15 else STORE_TYPES if roll < 0.45 else PROCESS_TYPES
        element_type = rng.choice(kind)
        element: dict[str, Any] = {
            "id": f"e{i}",
            "type": element_type,
            "boundary": "internet" if kind is ENTITY_TYPES and rng.random() < 0.7 else f"zone-{rng.randrange(40)}",
            "data": [f"data-{rng.randrange(200)}" for _ in range(rng.randrange(3))],
        }
        if kind is PROCESS_TYPES:
            element["authentication"] = rng.choice(["none", "api-key", "oauth2", "mtls"])
            element["controls"] = rng.sample(CONTROLS, rng.randrange(3))
        if element_type in ("model", "inference-service", "llm"):
            element["model"] = {
                "outputs": rng.choice(["labels", "scores", "top-k"]),
                "trained_on": [f"data-{rng.randrange(200)}" for _ in range(2)],
                "artifact_format": rng.choice(["safetensors", "onnx", "pickle"]),
            }
        if element_type == "llm":
            element["llm"] = {"untrusted_input": rng.random() < 0.5, "tools": ["search"] if rng.random() < 0.3 else []}
        items.append(element)
    links = []
    seen: set[tuple[int, int]] = set()
    while len(links) < flows:
        a, b = rng.randrange(elements), rng.randrange(elements)
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        links.append(
            {
                "id": f"f{len(links)}",
                "from": f"e{a}",
                "to": f"e{b}",
                "data": [f"data-{rng.randrange(200)}"],
                "encrypted": rng.random() < 0.6,
            }
        )
    return {
        "modelward": 1,
        "name": f"generated system ({elements} elements, {flows} flows)",
        "boundaries": boundaries,
        "data": data,
        "elements": items,
        "flows": links,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--elements", type=int, default=2000)
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(generate(args.elements, args.flows, args.seed), sort_keys=False))


if __name__ == "__main__":
    main()
