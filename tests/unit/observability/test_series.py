"""Series files: each process counts into its own, a scrape sums every file of the directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from passgate.observability.metrics import Metrics
from passgate.observability.series import SeriesDirectory, SeriesFile
from passgate.observability.tables import CounterTable, GaugeTable, SummedTables

# Another process of the instance: counts, sets a gauge, and exits without stopping.
ANOTHER_PROCESS = """
import sys
from pathlib import Path
from passgate.observability.metrics import Metrics

metrics = Metrics(directory=Path(sys.argv[1]))
for _ in range(3):
    metrics.count_redis_bypass()
metrics.watch_queue("spend", lambda: 5.0)
metrics.sample_gauges()
"""


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_scrape_sums_the_processes_and_keeps_the_counts_of_one_that_exited(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [sys.executable, "-P", "-c", ANOTHER_PROCESS, str(tmp_path)], check=True, timeout=60
    )
    here, sibling = Metrics(directory=tmp_path), Metrics(directory=tmp_path)
    here.count_redis_bypass()
    sibling.count_redis_bypass()
    here.watch_queue("spend", lambda: 2.0)
    sibling.watch_queue("spend", lambda: 1.0)
    sibling.sample_gauges()  # a living sibling samples on its own timer

    for scraped in (here, sibling):
        samples = _samples(scraped)
        assert samples[("passgate_redis_bypass_total", ())] == 5  # the exited process's 3 too
        # gauges: the living processes only (the exited one had set 5)
        assert samples[("passgate_queue_depth", (("queue", "spend"),))] == 3
    assert not any(name.startswith("process_") for name, _ in _samples(here))
    assert len(list(tmp_path.glob("*.series"))) == 3


async def test_a_stopped_process_no_longer_adds_to_a_gauge(tmp_path: Path) -> None:
    here, sibling = Metrics(directory=tmp_path), Metrics(directory=tmp_path)
    here.watch_queue("spend", lambda: 2.0)
    sibling.watch_queue("spend", lambda: 1.0)
    await sibling.start()
    assert _samples(here)[("passgate_queue_depth", (("queue", "spend"),))] == 3
    await sibling.stop()
    assert _samples(here)[("passgate_queue_depth", (("queue", "spend"),))] == 2


def test_series_past_a_full_file_are_counted_under_other() -> None:
    store = SeriesFile(slots=4, index_bytes=4096)
    counter = CounterTable("c", "doc", ("model",))
    gauge = GaugeTable("g", "doc", ("queue",))
    counter.bind(store)  # the overflow series: slot 0
    gauge.bind(store)  # slot 1
    for index in range(5):
        counter.inc((f"m{index}",), 2)
    gauge.set(gauge.slot(("a",)), 7)
    totals = SummedTables((counter, gauge), SeriesDirectory(None, store)).totals()
    assert totals["c"] == {("other",): [6.0], ("m0",): [2.0], ("m1",): [2.0]}
    assert totals["g"] == {("other",): [7.0]}
    assert SeriesFile(slots=1024, index_bytes=16).allocate("x", ("y",), 1) is None
