"""The benchmark's floor: the gateway's model behind a bare FastAPI endpoint, with no protection at all.

``POST /predict`` takes the raw PNG body, decodes it with Pillow to 8×8 grayscale and answers the label and
the class probabilities: no authentication, no rate limits, no upload validation, no hardening, no audit log.
The model is the signed artifact's ``model.safetensors`` (loaded with :func:`load_model`, wrapped in
:class:`TorchClassifier` as the gateway does) and uvicorn runs with the gateway's settings (one worker, log
level warning, no access log, 5 s keep-alive, one torch thread). As in the gateway, the model runs in the
threadpool, so the two differ only by the protections. Run it with

    python benchmarks/gateway/bare_app.py --artifact MODELS/digits-cnn --port 8001
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import torch
import uvicorn
from fastapi import FastAPI, Request
from PIL import Image
from starlette.concurrency import run_in_threadpool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from modelward.classifiers.store import load_model  # noqa: E402
from modelward.classifiers.torch_adapter import TorchClassifier  # noqa: E402

DIGITS_SHAPE = (1, 8, 8)


def create_app(artifact: Path, threads: int | None = None) -> FastAPI:
    """A FastAPI app serving the artifact's model at ``POST /predict`` (raw image body).

    ``threads`` bounds the threadpool as the gateway's ``server.inference_threads`` bounds predictions
    (None: anyio's 40).
    """
    module, _ = load_model(artifact / "model")
    classifier = TorchClassifier(module, DIGITS_SHAPE, bounds=(0.0, 1.0), num_classes=10)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if threads is not None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(docs_url=None, redoc_url=None, lifespan=lifespan)

    def predict(data: bytes) -> dict[str, Any]:
        gray = Image.open(io.BytesIO(data)).convert("L").resize((8, 8), Image.Resampling.BILINEAR)
        x = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8).to(torch.float32) / 255.0
        probabilities = classifier.probabilities(x.reshape(1, *DIGITS_SHAPE))[0]
        return {"label": int(probabilities.argmax()), "probabilities": [float(p) for p in probabilities.tolist()]}

    @app.post("/predict")
    async def predict_route(request: Request) -> dict[str, Any]:
        """Classify the raw image in the request body."""
        return await run_in_threadpool(predict, await request.body())

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the bare app on loopback with the gateway's uvicorn settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, required=True, help="signed artifact folder (holds model.*)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=None, help="threadpool size (default: anyio's 40)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    uvicorn.run(
        create_app(args.artifact, args.threads),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=5,
        server_header=False,
    )


if __name__ == "__main__":
    main()
