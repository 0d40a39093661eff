"""The benchmark's own arithmetic and plumbing: the tables of bench.floor, bench.bytecodes and
bench.instructions, run_with_services."""

from __future__ import annotations

import subprocess

import bench.procs
import pytest
from bench import bytecodes, instructions
from bench.floor import Runs, summary
from bench.procs import BenchError, Services, ensure_tools, run_with_services


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


def test_bytecodes_are_shown_per_call_by_file_and_by_function() -> None:
    site = "/srv/app/.venv/lib/python3.11/site-packages"
    counts = {
        "/srv/app/src/passgate/proxy/relay.py:83 Relay.__call__": 2_300,
        "/srv/app/src/passgate/proxy/relay.py:137 Relay._handle": 1_450,
        f"{site}/uvicorn/protocols/http/httptools_impl.py:461 RequestResponseCycle.send": 5_300,
        "/usr/lib/python3.11/asyncio/locks.py:182 Event.set": 415,
        "<string>:2 __create_fn__.<locals>.__init__": 2_330,
    }
    lines = bytecodes.summary(counts, calls=10, top=2)
    assert lines[0] == "1,180 bytecodes per call (10 calls)"
    at = lines.index("per file:")
    assert lines[at + 1 : at + 5] == [
        "    530.0  uvicorn/protocols/http/httptools_impl.py",
        "    375.0  passgate/proxy/relay.py",
        "    233.0  <string>",
        "     41.5  asyncio/locks.py",
    ]
    assert lines[-3:] == [
        "the 2 functions with the most:",
        "    530.0  uvicorn/protocols/http/httptools_impl.py:461 RequestResponseCycle.send",
        "    233.0  <string>:2 __create_fn__.<locals>.__init__",
    ]


def test_instruction_counts_of_two_trees_give_medians_spreads_and_the_change() -> None:
    lines = instructions.summary(
        {"this tree": [480_000, 478_000, 490_000], "/tmp/new/src": [462_000, 458_000, 466_000]}
    )
    assert lines == [
        "this tree: median 480,000 per call (480,000, 478,000, 490,000; spread 2.5%)",
        "/tmp/new/src: median 462,000 per call (462,000, 458,000, 466,000; spread 1.7%)",
        "/tmp/new/src against this tree: -3.7%",
    ]
    assert instructions.summary({"this tree": [500_000]}) == [
        "this tree: median 500,000 per call (500,000; spread 0.0%)"
    ]


def test_missing_tools_give_the_install_command_and_install_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_install(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(bench.procs, "find_tool", lambda name: None)
    monkeypatch.setattr(subprocess, "run", no_install)
    with pytest.raises(BenchError, match=r"`sudo apt-get install -y nginx-light wrk`"):
        ensure_tools()
