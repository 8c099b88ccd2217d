"""A TTS service as users write one: FastAPI on uvicorn.

``/stream`` streams chunks from a sync generator (Starlette runs each ``next()``
in its thread pool), ``/async`` and ``/sync`` return a whole utterance
(``slow=1``: one stage takes a second, to be in flight at SIGTERM). Each request
tags its span with ``app.request_id`` so the test can find its trace.
``APP_STYLE=import`` configures tts-otel at import; ``lifespan`` in the ASGI
lifespan, as the README shows. Run by tests/integrations/test_fastapi.py:
``python -m uvicorn tests.fastapi_app:app``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import tts_otel

CHUNKS = 3
CHUNK_SAMPLES = 2400


def _configure() -> tts_otel.Telemetry:
    # The file exporter's directory comes from TTS_OTEL_OUTPUT_DIR.
    return tts_otel.configure(
        service_name="tts-fastapi", exporters="file", nvml=False, gpu_memory=False
    )


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    with _configure():
        yield


if os.environ.get("APP_STYLE", "import") == "lifespan":
    app = FastAPI(lifespan=lifespan)
else:
    _configure()
    app = FastAPI()


def _tagged(request_id: str, streaming: bool) -> tts_otel.Synthesis:
    return tts_otel.synthesis(
        model="glm-tts",
        sample_rate=24000,
        streaming=streaming,
        text="hello world",
        attributes={"app.request_id": request_id},
    )


def _chunks(request_id: str) -> Iterator[bytes]:
    with _tagged(request_id, streaming=True) as req:
        with req.stage("text_normalization"):
            time.sleep(0.001)
        for _ in range(CHUNKS):
            with req.stage("acoustic"):
                time.sleep(0.002)
            with req.stage("vocoder"):
                time.sleep(0.001)
            req.chunk(samples=CHUNK_SAMPLES)
            yield b"\0" * (2 * CHUNK_SAMPLES)


@app.get("/stream")
def stream(request_id: str) -> StreamingResponse:
    return StreamingResponse(_chunks(request_id), media_type="audio/L16")


@app.get("/async")
async def whole_async(request_id: str, slow: int = 0) -> dict[str, int]:
    with _tagged(request_id, streaming=False) as req:
        for stage in ("text_normalization", "acoustic", "vocoder"):
            with req.stage(stage):
                await asyncio.sleep(1.0 if slow and stage == "acoustic" else 0.002)
        req.audio(samples=CHUNKS * CHUNK_SAMPLES)
    return {"samples": CHUNKS * CHUNK_SAMPLES}


@app.get("/sync")
def whole_sync(request_id: str) -> dict[str, int]:
    with _tagged(request_id, streaming=False) as req:
        for stage in ("text_normalization", "acoustic", "vocoder"):
            with req.stage(stage):
                time.sleep(0.002)
        req.audio(samples=CHUNKS * CHUNK_SAMPLES)
    return {"samples": CHUNKS * CHUNK_SAMPLES}
