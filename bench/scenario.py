"""What one benchmark run measures, in which order, against which targets."""

import argparse
import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench import load, targets
from bench.gateways import (
    MASTER_KEY,
    ensure_litellm,
    generate_key,
    start_litellm,
    start_nginx,
    start_passgate,
    start_python_upstream,
)
from bench.load import ChatResult
from bench.nginx import proxy_config, upstream_config
from bench.payloads import ANTHROPIC_REQUEST
from bench.procs import BenchError, Service, Services, ensure_tools, free_port
from bench.report import DIRECT, NGINX, Results

PROVIDER_AUTH = "Bearer x"
MASTER_AUTH = f"Bearer {MASTER_KEY}"
CHAT = "/v1/chat/completions"
FILES = "/v1/files"
MESSAGES = "/v1/messages"
REDIS_URL = os.environ.get("PASSGATE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
RPM_NEVER_REACHED = 1_000_000_000  # a limit every call is checked against, none refused


def reachable(url: str) -> bool:
    """Whether something listens at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Plan:
    """How long and how much to measure."""

    seconds: int  # per wrk run (wrk takes whole seconds)
    warmup: int  # wrk at c=16 before a target's first run, not recorded
    levels: tuple[int, ...]  # concurrency of the main rows
    feature_levels: tuple[int, ...]  # concurrency of the feature-cost rows
    streams: int  # sequential streamed chats per target
    uploads: int  # 10 MB uploads per target
    rounds: int  # passes over the passgate variants, alternating; each row keeps its median


QUICK = Plan(
    seconds=2,
    warmup=1,
    levels=(1, 16, 64),
    feature_levels=(1, 64),
    streams=50,
    uploads=2,
    rounds=1,
)
FULL = Plan(
    seconds=3,
    warmup=2,
    levels=(1, 16, 64),
    feature_levels=(1, 16, 64),
    streams=200,
    uploads=5,
    rounds=5,
)


@dataclass(frozen=True)
class Variant:
    """One passgate configuration measured in the alternating rounds."""

    target: str
    url: str
    auth: str
    gateway: Service
    levels: tuple[int, ...]


@dataclass(frozen=True)
class Upstreams:
    """Base URLs of the fake upstreams and of the nginx reference proxy in front of them."""

    chat: str  # nginx: fixed chat completion
    sse: str  # Python: streamed chat and upload sink
    proxy_chat: str  # nginx proxy_pass -> chat
    proxy_sse: str  # nginx proxy_pass -> sse


class Bench:
    """Runs each measurement and files it into Results."""

    def __init__(
        self, plan: Plan, wrk: load.Wrk, services: Services, upstream: Service, urls: Upstreams
    ) -> None:
        self.plan = plan
        self.wrk = wrk
        self.services = services
        self.upstream = upstream
        self.urls = urls
        self.results = Results()

    def chat(
        self, target: str, url: str, auth: str, gateway: Service | None, levels: tuple[int, ...]
    ) -> None:
        """Non-streaming chat at each concurrency level, noting upstream and gateway CPU."""
        print(f"  chat     {target} ...", flush=True)
        self.wrk.run(url, auth, 16, self.plan.warmup)
        by_level = self.results.chat.setdefault(target, {})
        for level in levels:
            by_level[level] = self.chat_once(url, auth, gateway, level)

    def chat_once(self, url: str, auth: str, gateway: Service | None, level: int) -> ChatResult:
        """One wrk run at ``level`` clients."""
        watch = [self.upstream, *([gateway] if gateway else [])]
        return self.wrk.run(url, auth, level, self.plan.seconds, watch)

    def alternating(self, variants: list[Variant]) -> None:
        """Each variant at its levels, ``plan.rounds`` times in turn; each row is the run
        with the median throughput, so a slow moment of a shared machine lands on every
        variant alike instead of on whichever ran then."""
        runs: dict[tuple[str, int], list[ChatResult]] = {}
        for variant in variants:
            print(f"  chat     {variant.target} (warm-up) ...", flush=True)
            self.wrk.run(variant.url, variant.auth, 16, self.plan.warmup)
        for round_number in range(self.plan.rounds):
            print(f"  chat     round {round_number + 1} of {self.plan.rounds} ...", flush=True)
            for variant in variants:
                for level in variant.levels:
                    result = self.chat_once(variant.url, variant.auth, variant.gateway, level)
                    runs.setdefault((variant.target, level), []).append(result)
        for variant in variants:
            by_level = self.results.chat.setdefault(variant.target, {})
            every = self.results.rounds.setdefault(variant.target, {})
            for level in variant.levels:
                every[level] = runs[variant.target, level]
                ranked = sorted(runs[variant.target, level], key=lambda run: run.rps)
                by_level[level] = ranked[len(ranked) // 2]

    def stream(self, target: str, url: str, auth: str) -> None:
        """Sequential streamed chats."""
        print(f"  stream   {target} ...", flush=True)
        self.results.stream[target] = load.stream(url, auth, self.plan.streams)

    def stream_messages(self, target: str, url: str, auth: str) -> None:
        """Sequential streamed Anthropic messages."""
        print(f"  anthropic stream {target} ...", flush=True)
        found = load.stream(url, auth, self.plan.streams, ANTHROPIC_REQUEST)
        self.results.stream_messages[target] = found

    def upload(self, target: str, url: str, auth: str, gateway: Service | None) -> None:
        """10 MB multipart uploads, with the gateway's peak RSS."""
        print(f"  upload   {target} ...", flush=True)
        self.results.upload[target] = load.upload(url, auth, self.plan.uploads, gateway)

    def rss(self, target: str, service: Service) -> None:
        """RSS of every process of `service` now."""
        self.results.rss[target] = service.rss()

    def guarded(self, target: str, step: Callable[[], None]) -> None:
        """Run `step`; when a process fails, note it against `target` and go on."""
        try:
            step()
        except BenchError as error:
            first = str(error).splitlines()[0]
            print(f"  {target} failed: {error}", flush=True)
            self.results.missing[target] = f"failed: {first}"
        finally:
            for service in list(self.services.running):
                if service.name == "gateway":
                    self.services.stop(service)


def _start_upstreams(args: argparse.Namespace, plan: Plan, services: Services) -> Bench:
    tools = ensure_tools()
    port, proxy_chat, proxy_sse = free_port(), free_port(), free_port()
    upstream = start_nginx(
        services, tools["nginx"], "upstream", lambda prefix: upstream_config(prefix, port, 1)
    )
    _, sse_port = start_python_upstream(services, args.gap_ms)
    routes = {proxy_chat: port, proxy_sse: sse_port}
    start_nginx(services, tools["nginx"], NGINX, lambda prefix: proxy_config(prefix, routes, 2))
    urls = Upstreams(
        chat=f"http://127.0.0.1:{port}",
        sse=f"http://127.0.0.1:{sse_port}",
        proxy_chat=f"http://127.0.0.1:{proxy_chat}",
        proxy_sse=f"http://127.0.0.1:{proxy_sse}",
    )
    return Bench(plan, load.Wrk(tools["wrk"], services.workdir), services, upstream, urls)


def _baselines(bench: Bench) -> None:
    urls, levels = bench.urls, bench.plan.levels
    proxy = next(s for s in bench.services.running if s.name == NGINX)
    bench.chat(DIRECT, urls.chat + CHAT, PROVIDER_AUTH, None, levels)
    bench.chat(NGINX, urls.proxy_chat + CHAT, "", proxy, levels)
    bench.stream(DIRECT, urls.sse + CHAT, PROVIDER_AUTH)
    bench.stream(NGINX, urls.proxy_sse + CHAT, "")
    bench.stream_messages(DIRECT, urls.sse + MESSAGES, PROVIDER_AUTH)
    bench.upload(DIRECT, urls.sse + FILES, PROVIDER_AUTH, None)
    bench.upload(NGINX, urls.proxy_sse + FILES, "", proxy)


def _passgate_chat(bench: Bench) -> None:
    """passgate with a master key, with a virtual key, and without accounting, in turns."""
    chat_url = "/mistral" + CHAT
    gateway, url = start_passgate(bench.services, "gateway", bench.urls.chat)
    bare, bare_url = start_passgate(bench.services, "gateway", bench.urls.chat, accounting=False)
    features = bench.plan.feature_levels
    variants = [Variant(targets.PASSGATE, url + chat_url, MASTER_AUTH, gateway, bench.plan.levels)]
    key, why = generate_key(url)
    if key is None:
        print(f"  virtual key: {why}", flush=True)
        bench.results.missing[targets.VIRTUAL_KEY] = why
    else:
        auth = f"Bearer {key}"
        variants.append(Variant(targets.VIRTUAL_KEY, url + chat_url, auth, gateway, features))
    off = Variant(targets.NO_ACCOUNTING, bare_url + chat_url, MASTER_AUTH, bare, features)
    variants.append(off)
    bench.alternating(variants)
    bench.rss(f"{targets.PASSGATE} (after chat)", gateway)


def _rate_limited(bench: Bench) -> None:
    """A key with an rpm limit (never reached) through each counter store, in turns: per
    worker (PASSGATE_LIMITS_PROCESS=false), the instance's limits process, and Redis."""
    stores: list[tuple[str, dict[str, str]]] = [
        (targets.LIMITS_PER_WORKER, {"PASSGATE_LIMITS_PROCESS": "false"}),
        (targets.LIMITS_PROCESS, {}),
    ]
    if reachable(REDIS_URL):
        prefix = f"passgate-bench-{secrets.token_hex(4)}:"
        stores.append(
            (targets.LIMITS_REDIS, {"REDIS_URL": REDIS_URL, "PASSGATE_REDIS_PREFIX": prefix})
        )
    else:
        bench.results.missing[targets.LIMITS_REDIS] = f"n/a (no Redis at {REDIS_URL})"
    variants = []
    for target, env in stores:
        gateway, url = start_passgate(bench.services, "gateway", bench.urls.chat, extra_env=env)
        key, why = generate_key(url, {"rpm_limit": RPM_NEVER_REACHED})
        if key is None:
            bench.results.missing[target] = why
            continue
        auth = f"Bearer {key}"
        levels = bench.plan.feature_levels
        variants.append(Variant(target, url + "/mistral" + CHAT, auth, gateway, levels))
    bench.alternating(variants)


def _deployments(bench: Bench) -> None:
    """The upstream as one deployment and as three (weights 1:1:2, each its own name and
    key) behind /mistral, in turns: what choosing a deployment per call costs."""
    config = bench.services.workdir / "deployments.yaml"
    entries = [
        {"name": name, "api_base": bench.urls.chat, "api_key": "x", "weight": weight}
        for name, weight in (("one", 1), ("two", 1), ("three", 2))
    ]
    config.write_text(json.dumps({"mistral": {"deployments": entries}}), encoding="utf-8")
    single, single_url = start_passgate(bench.services, "gateway", bench.urls.chat)
    pooled, pooled_url = start_passgate(bench.services, "gateway", bench.urls.chat, config=config)
    levels = bench.plan.feature_levels
    chat_url = "/mistral" + CHAT
    bench.alternating(
        [
            Variant(targets.ONE_DEPLOYMENT, single_url + chat_url, MASTER_AUTH, single, levels),
            Variant(targets.THREE_DEPLOYMENTS, pooled_url + chat_url, MASTER_AUTH, pooled, levels),
        ]
    )


def _passgate_stream_and_upload(bench: Bench) -> None:
    anthropic = {"ANTHROPIC_API_BASE": bench.urls.sse, "ANTHROPIC_API_KEY": "x"}
    gateway, url = start_passgate(bench.services, "gateway", bench.urls.sse, extra_env=anthropic)
    bench.stream(targets.PASSGATE, url + "/mistral" + CHAT, MASTER_AUTH)
    bench.stream_messages(targets.PASSGATE, url + "/anthropic" + MESSAGES, MASTER_AUTH)
    bench.upload(targets.PASSGATE, url + "/mistral" + FILES, MASTER_AUTH, gateway)
    bench.rss(f"{targets.PASSGATE} (after stream + upload)", gateway)


def _litellm(bench: Bench) -> None:
    command, why = ensure_litellm()
    if command is None:
        raise BenchError(f"LiteLLM not installed ({why})")
    gateway, url = start_litellm(bench.services, command, "gateway", bench.urls.chat)
    bench.chat("litellm", url + "/mistral" + CHAT, MASTER_AUTH, gateway, bench.plan.levels)
    bench.rss("litellm (after chat)", gateway)
    bench.services.stop(gateway)
    gateway, url = start_litellm(bench.services, command, "gateway", bench.urls.sse)
    bench.stream("litellm", url + "/mistral" + CHAT, MASTER_AUTH)
    bench.upload("litellm", url + "/mistral" + FILES, MASTER_AUTH, gateway)


def measure(args: argparse.Namespace, plan: Plan, services: Services) -> Results:
    """Start the upstreams, then measure each target in turn; a failing gateway is noted."""
    bench = _start_upstreams(args, plan, services)
    only = None
    if args.limits_only:
        only = ("passgate, rate-limited key", targets.LIMITS_PROCESS, _rate_limited)
    elif args.deployments_only:
        only = ("passgate, one and three deployments", targets.THREE_DEPLOYMENTS, _deployments)
    if only is not None:  # the direct rows, then one step's
        title, target, step = only
        print("direct:", flush=True)
        bench.chat(DIRECT, bench.urls.chat + CHAT, PROVIDER_AUTH, None, plan.feature_levels)
        print(f"{title}:", flush=True)
        bench.guarded(target, lambda: step(bench))
        return bench.results
    print("direct and nginx:", flush=True)
    _baselines(bench)
    print("passgate:", flush=True)
    bench.guarded(targets.PASSGATE, lambda: _passgate_chat(bench))
    bench.guarded(f"{targets.PASSGATE} (stream)", lambda: _passgate_stream_and_upload(bench))
    bench.guarded(targets.LIMITS_PROCESS, lambda: _rate_limited(bench))
    bench.guarded(targets.THREE_DEPLOYMENTS, lambda: _deployments(bench))
    if args.with_litellm:
        print("litellm:", flush=True)
        bench.guarded("litellm", lambda: _litellm(bench))
    return bench.results
