"""A service that hands requests to worker processes, as tests/test_fork.py runs it:
``python tests/worker_pools.py START_METHOD POOL CONFIGURE_IN_CHILD``.

The parent configures tts-otel (the ``file`` exporter, from ``TTS_OTEL_*``
variables the test sets), makes requests of its own, then runs TASKS tasks of
REQUESTS requests each on WORKERS workers. It prints one JSON line: how many
requests each child process made, by pid, and the parent's pid. Spawned and
forkserver children run this file again as ``__mp_main__``, so nothing but the
definitions runs at import.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import tts_otel

WORKERS = 2
TASKS = 8
REQUESTS = 5  # per task
PARENT_REQUESTS = 3


def requests(count: int) -> int:
    for _ in range(count):
        with tts_otel.synthesis(model="glm-tts", text="hello", sample_rate=24000) as request:
            request.set_attribute("test.pid", os.getpid())
            with request.stage("vocoder"):
                pass
    return os.getpid()


def main(start_method: str, pool: str, configure_in_child: bool) -> None:
    telemetry = tts_otel.configure("worker-pools", "file")
    requests(PARENT_REQUESTS)
    telemetry.force_flush()  # the parent's requests are in the SDK's totals at the fork
    context = multiprocessing.get_context(start_method)
    # The set-up the README gives for children that do not inherit the parent's.
    initializer = tts_otel.configure if configure_in_child else None
    initargs: tuple[str, ...] = ("worker-pools", "file") if configure_in_child else ()
    work = [REQUESTS] * TASKS
    if pool == "executor":
        executor = (
            ProcessPoolExecutor(WORKERS, context, tts_otel.configure, ("worker-pools", "file"))
            if configure_in_child
            else ProcessPoolExecutor(WORKERS, context)
        )
        with executor:
            pids = list(executor.map(requests, work))
    elif pool == "pool-with":  # Pool.__exit__ terminates: the workers get SIGTERM
        with context.Pool(WORKERS, initializer, initargs) as workers:
            pids = workers.map(requests, work)
    else:  # "pool-join": close() and join() let the workers end by themselves
        workers = context.Pool(WORKERS, initializer, initargs)
        pids = workers.map(requests, work)
        workers.close()
        workers.join()
    telemetry.shutdown()
    made = Counter[int]()
    for pid in pids:
        made[pid] += REQUESTS
    print(json.dumps({"parent": os.getpid(), "children": made}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "configure")
