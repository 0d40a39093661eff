"""The benchmark's own arithmetic and plumbing: bench.floor's table, run_with_services."""

from __future__ import annotations

import pytest
from bench.floor import Runs, summary
from bench.procs import BenchError, Services, run_with_services


def test_the_floor_table_shows_medians_and_what_each_row_adds() -> None:
    runs = {
        "echo": Runs(rps=[50_000, 40_000, 60_000], p99=[5, 4, 6], cpu=[24, 20, 30], p50_one=[0.1]),
        "relay": Runs(rps=[20_000], p99=[8], cpu=[62.5], p50_one=[0.2, 0.3, 0.25]),
    }
    head, rule, echo, relay = summary(runs)
    assert head.startswith("| gateway |")
    assert rule.startswith("|---|")
    assert echo == "| echo | 50,000 | 5.00 | 24.0 |  | 0.100 |"
    assert relay == "| relay | 20,000 | 8.00 | 62.5 | +38.5 | 0.250 |"


def test_run_with_services_prints_the_lines_and_stops_every_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[Services] = []

    def body(services: Services) -> list[str]:
        services.start("sleeper", ["sleep", "30"])
        seen.append(services)
        return ["one", "two"]

    assert run_with_services("test", body) == 0
    assert capsys.readouterr().out == "\none\ntwo\n"
    assert seen[0].running == []


def test_run_with_services_reports_a_bench_error_and_stops_every_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[Services] = []

    def body(services: Services) -> list[str]:
        service = services.start("sleeper", ["sleep", "30"])
        seen.append(services)
        raise BenchError(f"{service.name} failed")

    assert run_with_services("test", body) == 2
    assert capsys.readouterr().err == "bench.test: sleeper failed\n"
    assert seen[0].running == []
