"""What every passgate process (the command, the server, each worker) sets up for itself."""

from __future__ import annotations

import gc

from passgate.config import Settings
from passgate.observability.logs import configure_logging


def setup_process_logging(settings: Settings) -> None:
    """JSON logs for this process, with the master and provider keys redacted."""
    secrets = settings.provider_keys()
    if settings.master_key is not None:
        secrets.append(settings.master_key.get_secret_value())
    configure_logging(settings.log_level, secrets=secrets)


GC_YOUNG_THRESHOLD = 50_000  # net new container objects between young collections


def collect_seldom() -> None:
    """Freeze the start-up heap out of the garbage collector, which then runs seldom.

    Modules, settings and the app live as long as the process. Frozen, they are no longer
    traversed by every full collection, which profiles under load showed costing more
    than any single part of the relay (and p99 spikes of 100+ ms). Refcounting frees a
    call's objects (or a batch's rows) when it ends; the collector is only needed for
    cycles. At the default threshold (700 allocations) it ran thousands of times per
    second under load, promoting in-flight objects and queued rows to the old generations,
    whose full collections took a large share of a worker's CPU and set the p99; the same
    holds for the spend-writer process's rows (figures: ``docs/performance.md``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
