"""Turns the measurements into one markdown table (bench/targets.py checks them)."""

import math
from dataclasses import dataclass, field

from bench.load import ChatResult, StreamResult, UploadResult, median, percentile
from bench.payloads import STREAM_EVENTS
from bench.procs import MIB

DIRECT = "direct"
NGINX = "nginx proxy_pass"
Row = tuple[str, str, str, str, str, str, str, str]
HEADER: Row = ("Test", "Target", "Throughput", "p50", "p90", "p99", "Added p50", "Notes")


@dataclass
class Results:
    """Everything measured in one run, by target name (insertion order is table order)."""

    chat: dict[str, dict[int, ChatResult]] = field(default_factory=dict)
    stream: dict[str, StreamResult] = field(default_factory=dict)
    # streamed Anthropic messages (/v1/messages), direct and through /anthropic
    stream_messages: dict[str, StreamResult] = field(default_factory=dict)
    upload: dict[str, UploadResult] = field(default_factory=dict)
    rss: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # target -> why it was not measured
    # every run of the alternating rounds, in round order: target -> level -> runs
    rounds: dict[str, dict[int, list[ChatResult]]] = field(default_factory=dict)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f} ms"


def _added(value: float, base: float | None) -> str:
    if base is None or math.isnan(value) or math.isnan(base):
        return "-"
    return f"{value - base:+.3f} ms"


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def _chat_rows(results: Results) -> list[Row]:
    rows: list[Row] = []
    levels = sorted({c for by_level in results.chat.values() for c in by_level})
    for level in levels:
        direct = results.chat.get(DIRECT, {}).get(level)
        nginx = results.chat.get(NGINX, {}).get(level)
        for target, by_level in results.chat.items():
            result = by_level.get(level)
            if result is None:
                continue
            notes = [f"{name} CPU {cpu:.0f}%" for name, cpu in result.cpu.items()]
            if nginx is not None and target not in (DIRECT, NGINX):
                notes.append(f"{100 * result.rps / nginx.rps:.1f}% of nginx")
            if result.errors:
                notes.append(f"**{result.errors} errors**")
            rows.append(
                (
                    f"chat c={level}",
                    target,
                    f"{result.rps:,.0f} req/s",
                    _ms(result.p50),
                    _ms(result.p90),
                    _ms(result.p99),
                    "" if target == DIRECT else _added(result.p50, direct.p50 if direct else None),
                    "; ".join(notes),
                )
            )
    return rows


def _stream_rows(streams: dict[str, StreamResult], kind: str) -> list[Row]:
    rows: list[Row] = []
    direct = streams.get(DIRECT)
    for target, result in streams.items():
        responses = len(result.ttfb)
        chunks = result.chunks / responses if responses else float("nan")
        events = result.events / responses if responses else float("nan")
        notes = f"{chunks:.1f} reads for {events:.1f} events per response ({responses} requests)"
        if result.errors:
            notes += f"; **{result.errors} errors** ({result.first_error})"
        for name, values, base in (
            ("TTFB", result.ttfb, direct.ttfb if direct else None),
            ("total", result.total, direct.total if direct else None),
        ):
            rows.append(
                (
                    f"{kind} {STREAM_EVENTS} events, {name}",
                    target,
                    "",
                    _ms(median(values)),
                    _ms(percentile(values, 0.9)),
                    _ms(percentile(values, 0.99)),
                    ""
                    if target == DIRECT
                    else _added(median(values), median(base) if base else None),
                    notes if name == "TTFB" else "",
                )
            )
    return rows


def _upload_rows(results: Results) -> list[Row]:
    rows: list[Row] = []
    for target, result in results.upload.items():
        seconds = median(result.seconds)
        notes = []
        if result.rss_peak is not None and result.rss_baseline is not None:
            growth = result.rss_peak - result.rss_baseline
            notes.append(f"peak RSS +{_mib(growth)} over {_mib(result.rss_baseline)} (all procs)")
        if result.errors:
            notes.append(f"**{result.errors} errors** ({result.first_error})")
        rows.append(
            (
                f"upload {result.size / MIB:.0f} MB multipart",
                target,
                f"{result.size / MIB / seconds:,.0f} MB/s" if result.seconds else "-",
                _ms(seconds * 1000),
                "",
                "",
                "",
                "; ".join(notes),
            )
        )
    return rows


def _rss_rows(results: Results) -> list[Row]:
    rows: list[Row] = []
    for target, sizes in results.rss.items():
        listed = ", ".join(f"{label} {_mib(size)}" for label, size in sizes)
        rows.append(("RSS after load", target, "", "", "", "", "", listed))
    rows.extend(
        ("not measured", target, "", "", "", "", "", why) for target, why in results.missing.items()
    )
    return rows


def table(results: Results) -> str:
    """The markdown table of one run."""
    rows = [
        *_chat_rows(results),
        *_stream_rows(results.stream, "stream"),
        *_stream_rows(results.stream_messages, "anthropic stream"),
        *_upload_rows(results),
        *_rss_rows(results),
    ]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)
