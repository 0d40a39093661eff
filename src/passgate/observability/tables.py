"""Metric families kept as slots of a ``SeriesFile``, exported summed over an instance's processes.

prometheus_client's ``Counter`` checks itself and takes a lock on every ``inc``, and its
``Histogram.observe`` two (one for the sum, one for the bucket); its multiprocess mode
adds a write to a memory-mapped dict keyed by a JSON string on top, and is switched on for
the whole process by an environment variable read at import. Here a count is one addition
into a slot of this process's ``SeriesFile``, and a family is built from the sum of every
process's slots only when ``/metrics`` is scraped. Label values must already be bounded
(``CappedLabel``); a series that finds the file full is counted under ``other`` labels.

To add a counter: declare ``self.name = CounterTable(name, documentation, labels)`` in
``Metrics.__init__`` with the others (every table declared there is bound and exported),
and count with ``self.name.inc(label_values)``, e.g. ``inc(())`` for one without labels.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from passgate.observability.series import Labels, SeriesDirectory, SeriesFile

OTHER = "other"
Totals = dict[Labels, list[float]]


class Table:
    """A family's series in a ``SeriesFile``: the slots of each label tuple, found once."""

    width = 1
    sum_dead = True  # whether a process that exited still counts (not for gauges)
    values: memoryview[float]  # the series file's slots, once bound

    def __init__(self, name: str, documentation: str, labels: Labels) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self._slots: dict[Labels, int] = {}
        self._store: SeriesFile | None = None
        self._overflow = 0

    def bind(self, store: SeriesFile) -> None:
        """Count into ``store`` (the ``Metrics`` that lists this table does it)."""
        self._store = store
        self.values = store.values
        overflow = store.allocate(self.name, (OTHER,) * len(self.labels), self.width)
        if overflow is None:
            raise ValueError(f"no room for {self.name} in the series file")
        self._overflow = overflow

    def slot(self, key: Labels) -> int:
        """The first slot of the series of these label values (in ``labels`` order)."""
        slot = self._slots.get(key)
        if slot is None:
            assert self._store is not None, f"{self.name} is not bound to a series file"
            found = self._store.allocate(self.name, key, self.width)
            if found is None:
                return self._overflow
            slot = self._slots[key] = found
        return slot

    def family(self, totals: Totals) -> Metric:
        """The family as prometheus_client exports it, from the summed series."""
        raise NotImplementedError


class CounterTable(Table):
    """A counter family (exported as ``<name>_total``)."""

    def inc(self, key: Labels, amount: float = 1.0) -> None:
        """Add ``amount`` to the series of these label values (in ``labels`` order)."""
        self.values[self.slot(key)] += amount

    def family(self, totals: Totals) -> CounterMetricFamily:
        """The family, without the series never counted into."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, (value,) in totals.items():
            if value:
                family.add_metric(key, value)
        return family


class GaugeTable(Table):
    """A gauge family: each process sets its own series; live processes' values are summed."""

    sum_dead = False

    def set(self, slot: int, value: float) -> None:
        """Set the series at ``slot`` (from ``slot``) to ``value``."""
        self.values[slot] = value

    def family(self, totals: Totals) -> GaugeMetricFamily:
        """The family, one series per label tuple set by some process."""
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, (value,) in totals.items():
            if key != (OTHER,) * len(self.labels) or value:
                family.add_metric(key, value)
        return family


class HistogramTable(Table):
    """A histogram family: each series is its bucket counts (not cumulative), then its sum."""

    def __init__(
        self, name: str, documentation: str, labels: Labels, buckets: tuple[float, ...]
    ) -> None:
        super().__init__(name, documentation, labels)
        self.bounds = (*buckets, float("inf"))
        self.width = len(self.bounds) + 1
        # as prometheus_client writes them for these bounds (checked by a test against it)
        self.le = (*(repr(float(bound)) for bound in buckets), "+Inf")

    def observe(self, key: Labels, amount: float) -> None:
        """Count ``amount`` in the series of these label values (in ``labels`` order)."""
        self.add(self.slot(key), amount)

    def add(self, base: int, amount: float) -> None:
        """Count ``amount`` in the series whose first slot is ``base``."""
        values = self.values
        values[base + bisect_left(self.bounds, amount)] += 1
        values[base + self.width - 1] += amount

    def family(self, totals: Totals) -> HistogramMetricFamily:
        """The family (``_bucket``, ``_sum``, ``_count``), buckets made cumulative."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, values in totals.items():
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for le, count in zip(self.le, values, strict=False):
                cumulative += count
                buckets.append((le, cumulative))
            if cumulative:
                family.add_metric(key, buckets, values[-1])
        return family


class SummedTables(Collector):
    """Exports tables summed over every process of the instance, at each scrape."""

    def __init__(self, tables: tuple[Table, ...], directory: SeriesDirectory) -> None:
        self._tables = {table.name: table for table in tables}
        self._directory = directory

    def totals(self) -> dict[str, Totals]:
        """Per family name, per label tuple: the element-wise sum over the processes."""
        sums: dict[str, Totals] = {name: {} for name in self._tables}
        for reader in self._directory.readers():
            alive: bool | None = None
            for series, values in reader.series():
                table = self._tables.get(series.name)
                if table is None or table.width != series.width:
                    continue  # written by another version of the gateway
                if not table.sum_dead:
                    if alive is None:
                        alive = reader.alive()
                    if not alive:
                        continue
                into = sums[series.name].setdefault(series.labels, [0.0] * series.width)
                for index, value in enumerate(values):
                    into[index] += value
        return sums

    def collect(self) -> Iterator[Metric]:
        """Every table's family, as the registry scrapes collectors."""
        totals = self.totals()
        for name, table in self._tables.items():
            yield table.family(totals[name])
