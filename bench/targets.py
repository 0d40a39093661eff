"""The benchmark's targets for passgate, checked against one run's measurements."""

from bench.load import median
from bench.procs import MIB
from bench.report import DIRECT, NGINX, Results

PASSGATE = "passgate"
VIRTUAL_KEY = "passgate + virtual key"
NO_ACCOUNTING = "passgate, accounting off"
# a virtual key with an rpm limit, its counters in each of the three stores
LIMITS_PER_WORKER = "passgate + rpm key, per-worker counters"
LIMITS_PROCESS = "passgate + rpm key, limits process"
LIMITS_REDIS = "passgate + rpm key, Redis"
# the same upstream as one deployment and as three (weights 1:1:2) behind /mistral
ONE_DEPLOYMENT = "passgate, 1 deployment"
THREE_DEPLOYMENTS = "passgate, 3 deployments"


def _verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def _latency(results: Results, full: str) -> str:
    gateway = results.chat.get(full, {}).get(1)
    direct = results.chat.get(DIRECT, {}).get(1)
    if gateway is None or direct is None:
        return f"{_verdict(None)} added p50 at c=1 (not measured)"
    added = gateway.p50 - direct.p50
    return f"{_verdict(added <= 0.2)} added p50 at c=1: {added:.3f} ms (target <= 0.2 ms)"


def _throughput(results: Results, full: str) -> str:
    gateway = results.chat.get(full, {}).get(64)
    nginx = results.chat.get(NGINX, {}).get(64)
    if gateway is None:
        return f"{_verdict(None)} throughput at c=64 (not measured)"
    ok = gateway.rps >= 11_500 and gateway.p99 < 20
    share = f", {100 * gateway.rps / nginx.rps:.1f}% of nginx" if nginx else ""
    return (
        f"{_verdict(ok)} c=64: {gateway.rps:,.0f} req/s, p99 {gateway.p99:.2f} ms{share} "
        "(target >= 11,500 req/s, p99 < 20 ms)"
    )


def _streaming(results: Results) -> str:
    gateway = results.stream.get(PASSGATE)
    direct = results.stream.get(DIRECT)
    if gateway is None or direct is None or not gateway.ttfb or not direct.ttfb:
        return f"{_verdict(None)} streaming TTFB (not measured)"
    added = median(gateway.ttfb) - median(direct.ttfb)
    # The client itself sometimes reads two events at once; batching shows as fewer reads than
    # the same client got straight from the upstream, not as fewer reads than events.
    reads = gateway.chunks / len(gateway.ttfb)
    direct_reads = direct.chunks / len(direct.ttfb)
    separate = reads >= direct_reads - 0.5
    ok = added <= 0.2 and separate
    return (
        f"{_verdict(ok)} stream: TTFB added p50 {added:.3f} ms (target <= 0.2 ms); "
        f"{reads:.1f} reads per response through the gateway, {direct_reads:.1f} direct "
        f"({'each event on its own' if separate else 'events batched'})"
    )


def _memory(results: Results) -> str:
    workers = [
        size
        for target, sizes in results.rss.items()
        if target.startswith(PASSGATE)
        for label, size in sizes
        if label == "worker"
    ]
    upload = results.upload.get(PASSGATE)
    growth = None
    if upload is not None and upload.rss_peak is not None and upload.rss_baseline is not None:
        growth = upload.rss_peak - upload.rss_baseline
    if not workers or growth is None:
        return f"{_verdict(None)} memory (not measured)"
    ok = max(workers) <= 80 * MIB and growth < 10 * 1000 * 1000
    return (
        f"{_verdict(ok)} worker RSS max {max(workers) / MIB:.1f} MiB (target <= 80 MiB); "
        f"upload peak +{growth / MIB:.1f} MiB (target < 10 MB)"
    )


def cost_of(results: Results, target: str, level: int) -> float | None:
    """Throughput lost by ``target`` against passgate without accounting at ``level``: the
    median over the alternating rounds of each round's ratio (runs seconds apart, so a
    drift of the machine's speed cancels), else the ratio of the two rows."""
    mine = results.rounds.get(target, {}).get(level, [])
    bare = results.rounds.get(NO_ACCOUNTING, {}).get(level, [])
    if mine and len(mine) == len(bare):
        return median([1 - run.rps / base.rps for run, base in zip(mine, bare, strict=True)])
    row = results.chat.get(target, {}).get(level)
    base = results.chat.get(NO_ACCOUNTING, {}).get(level)
    if row is None or base is None:
        return None
    return 1 - row.rps / base.rps


def _feature_cost(results: Results) -> str:
    cost = cost_of(results, VIRTUAL_KEY, 64)
    if cost is None:
        return f"{_verdict(None)} virtual key + accounting cost (needs both rows at c=64)"
    return (
        f"{_verdict(cost <= 0.15)} virtual key + accounting cost {100 * cost:.1f}% of "
        "throughput at c=64 vs master key without accounting (target <= 15%)"
    )


def _accounting_cost(results: Results) -> str:
    """Accounting on within 15% of accounting off (master key, each level)."""
    levels = sorted(set(results.chat.get(PASSGATE, {})) & set(results.chat.get(NO_ACCOUNTING, {})))
    costs = {level: cost_of(results, PASSGATE, level) for level in levels}
    found = {level: cost for level, cost in costs.items() if cost is not None}
    if not found:
        return f"{_verdict(None)} accounting cost (needs passgate rows with and without it)"
    figures = ", ".join(f"c={level} {-100 * cost:+.1f}%" for level, cost in found.items())
    worst = max(found.values())
    return (
        f"{_verdict(worst <= 0.15)} accounting on vs off (master key; median of the rounds' "
        f"ratios): {figures} (target: within 15%)"
    )


def check(results: Results) -> list[str]:
    """One line per target: PASS / FAIL / n/a and the measured value."""
    full = VIRTUAL_KEY if VIRTUAL_KEY in results.chat else PASSGATE
    return [
        _latency(results, full),
        _throughput(results, full),
        _streaming(results),
        _memory(results),
        _feature_cost(results),
        _accounting_cost(results),
    ]
