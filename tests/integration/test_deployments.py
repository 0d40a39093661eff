"""Several Mistral deployments behind /mistral: real gateway processes, three fake upstreams.

Each deployment is its own fake Mistral (a real HTTP server on loopback recording what it
receives), named and weighted in a config file whose keys are ``os.environ/`` references.
"""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from mistralai.client import Mistral

from tests.conftest import MASTER_KEY
from tests.support.fake_mistral import FakeMistral, closed_port
from tests.support.gateway import GatewayProcess
from tests.support.http import Reply, request
from tests.support.services import REDIS_URL, require_redis
from tests.support.spend import admin, spend_row

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = orjson.dumps(
    {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Hi"}]}
)
KEYS = {"a": "mk-deployment-a-0123456789", "b": "mk-deployment-b-0123456789"}
KEYS["c"] = "mk-deployment-c-0123456789"
NAMES = ("a", "b", "c")


def config(path: Path, deployments: list[dict[str, Any]], **settings: Any) -> Path:
    """A config file declaring ``deployments`` under ``mistral:`` (keys by env reference)."""
    path.write_bytes(orjson.dumps({"mistral": {"deployments": deployments}, **settings}))
    return path  # JSON is YAML


def entry(name: str, fake: FakeMistral | str, **fields: Any) -> dict[str, Any]:
    """A deployment entry: ``fake`` (or a URL) as its base, its key named by env reference."""
    url = fake if isinstance(fake, str) else fake.url
    return {
        "name": name,
        "api_base": url,
        "api_key": f"os.environ/DEP_KEY_{name.upper()}",
        **fields,
    }


def gateway_env(**extra: str) -> dict[str, str]:
    """The gateway's environment: the master key, each deployment's key, fast spend rows."""
    env = {
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_SPEND_FLUSH_INTERVAL": "0.05",
        **{f"DEP_KEY_{name.upper()}": key for name, key in KEYS.items()},
    }
    env.update(extra)
    return env


def chat(gateway: GatewayProcess, headers: dict[str, str] | None = None, **extra: str) -> Reply:
    """One chat completion through /mistral with the master key."""
    return request(
        gateway.url,
        "POST",
        "/mistral/v1/chat/completions",
        CHAT,
        {**ADMIN, "Content-Type": "application/json", **(headers or {}), **extra},
    )


def answer_chats(fake: FakeMistral, status: int, body: str = "{}", **headers: str) -> None:
    """Make ``fake`` answer every chat completion with ``status`` (JSON) and ``headers``."""
    fake.set_response(
        "/v1/chat/completions",
        body,
        status=status,
        headers=[("Content-Type", "application/json"), *headers.items()],
    )


def chats(fake: FakeMistral) -> int:
    """Chat completions ``fake`` received."""
    return sum(1 for r in fake.requests if r.path == "/v1/chat/completions")


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeMistral]]:
    with FakeMistral() as a, FakeMistral() as b, FakeMistral() as c:
        yield {"a": a, "b": b, "c": c}


@pytest.fixture
def upstreams(fakes: dict[str, FakeMistral]) -> dict[str, FakeMistral]:
    for fake in fakes.values():
        fake.reset()
    return fakes


def start(tmp_path: Path, deployments: list[dict[str, Any]], **env: str) -> GatewayProcess:
    """A gateway serving ``deployments`` (stopped by the caller)."""
    path = config(tmp_path / f"passgate-{time.monotonic_ns()}.yaml", deployments)
    return GatewayProcess(gateway_env(**env), args=("--config", str(path)))


def test_calls_split_by_weight_and_spend_rows_name_the_deployment(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    deployments = [
        entry("a", upstreams["a"], weight=1),
        entry("b", upstreams["b"], weight=1),
        entry("c", upstreams["c"], weight=2),
    ]
    with start(tmp_path, deployments) as gateway:
        answered: dict[str, int] = dict.fromkeys(NAMES, 0)
        ids: dict[str, str] = {}
        for index in range(400):
            reply = chat(gateway, {"x-request-id": f"split-{index}"})
            assert reply.status == 200, reply.body
            name = reply.headers["x-passgate-deployment"]
            assert reply.headers["x-passgate-attempts"] == "1"
            answered[name] += 1
            ids.setdefault(name, f"split-{index}")
        for name, share in (("a", 0.25), ("b", 0.25), ("c", 0.5)):
            assert abs(chats(upstreams[name]) - 400 * share) <= 400 * share * 0.1
            assert answered[name] == chats(upstreams[name])
            # each deployment's own key went to it, never another's
            assert {r.header("authorization") for r in upstreams[name].requests} == {
                f"Bearer {KEYS[name]}"
            }
        for name, rid in ids.items():
            assert spend_row(gateway, rid)["deployment"] == name
        deadline = time.monotonic() + 10
        while True:
            report = admin(gateway, "GET", "/spend/report?group_by=deployment")
            counts = {row["group"]: row["requests"] for row in report["data"]}
            if sum(counts.values()) >= 400 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert counts == {name: chats(upstreams[name]) for name in NAMES}


def test_a_rate_limited_deployment_is_avoided_until_its_retry_after(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    answer_chats(
        upstreams["b"],
        429,
        '{"object":"error","message":"Rate limit exceeded","type":"rate_limited"}',
        **{"Retry-After": "2"},
    )
    deployments = [entry(name, upstreams[name]) for name in NAMES]
    with start(tmp_path, deployments) as gateway:
        limited_at = None
        for _ in range(30):
            reply = chat(gateway)
            assert reply.status == 200, reply.body  # nobody sees the 429
            if limited_at is None and chats(upstreams["b"]):
                limited_at = time.monotonic()
                assert reply.headers["x-passgate-attempts"] == "2"
        assert limited_at is not None
        assert chats(upstreams["b"]) == 1  # set aside at once, for the whole cooldown
        state = deployment_states(gateway)["b"]
        assert state["state"] == "cooling_down" and state["last_error"] == "rate_limited"
        upstreams["b"].reset()
        time.sleep(max(0.0, limited_at + 2.2 - time.monotonic()))
        for _ in range(30):
            assert chat(gateway).status == 200
        assert chats(upstreams["b"]) >= 5  # back in the rotation after the cooldown


def test_every_deployment_rate_limited_answers_429_with_the_shortest_wait(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    for name, wait in (("a", "30"), ("b", "7")):
        answer_chats(upstreams[name], 429, **{"Retry-After": wait})
    deployments = [entry(name, upstreams[name]) for name in ("a", "b")]
    with start(tmp_path, deployments) as gateway:
        reply = chat(gateway)
        assert reply.status == 429
        assert reply.error["code"] == "deployments_rate_limited"
        assert reply.headers["retry-after"] in ("7", "6")
        assert reply.headers["x-passgate-attempts"] == "2"
        again = chat(gateway)  # nobody is asked while both cool down
        assert again.status == 429 and again.headers["retry-after"] in ("7", "6")
        assert chats(upstreams["a"]) == chats(upstreams["b"]) == 1


def deployment_states(gateway: GatewayProcess) -> dict[str, dict[str, Any]]:
    """``GET /health/deployments``' Mistral deployments by name."""
    reply = request(gateway.url, "GET", "/health/deployments", None, ADMIN)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert isinstance(body, dict)
    return {d["name"]: d for d in body["providers"]["mistral"]}


def test_a_refused_key_marks_its_deployment_dead_loudly_without_the_key(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    answer_chats(upstreams["c"], 401, '{"detail":"Unauthorized"}')
    deployments = [entry(name, upstreams[name]) for name in NAMES]
    with start(tmp_path, deployments) as gateway:
        for _ in range(12):
            reply = chat(gateway)
            assert reply.status == 200, reply.body
        assert chats(upstreams["c"]) == 1
        state = deployment_states(gateway)["c"]
        assert state["state"] == "dead" and state["last_error"] == "key_refused"
        assert state["since"] is not None and state["until"] is not None
        metrics = request(gateway.url, "GET", "/metrics").body.decode()
        assert (
            'passgate_deployment_set_aside_total{deployment="c",error="key_refused",'
            'provider="mistral"} 1.0'
            in metrics
            or 'passgate_deployment_set_aside_total{provider="mistral",deployment="c",'
            'error="key_refused"} 1.0'
            in metrics
        )
        logs = gateway.logs()
        assert "deployment 'c' of mistral: the upstream refused its key" in logs
        for key in KEYS.values():
            assert key not in logs
        health = request(gateway.url, "GET", "/health/deployments", None, ADMIN).body.decode()
        for key in KEYS.values():
            assert key not in health


def test_a_closed_port_costs_callers_nothing_but_one_retry(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    with closed_port() as dead:
        deployments = [entry("a", dead), entry("b", upstreams["b"])]
        with start(tmp_path, deployments) as gateway:
            first = chat(gateway)
            assert first.status == 200, first.body
            assert first.headers["x-passgate-deployment"] == "b"
            assert first.headers["x-passgate-attempts"] == "2"  # a was tried first
            for _ in range(10):
                reply = chat(gateway)
                assert reply.status == 200
                assert reply.headers["x-passgate-attempts"] == "1"  # a is set aside
            assert deployment_states(gateway)["a"]["last_error"] == "connect_failed"


def test_a_stream_cut_after_its_start_is_never_retried(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    for fake in upstreams.values():
        fake.configure(cut_stream_after=3)
    deployments = [entry(name, upstreams[name]) for name in NAMES]
    body = orjson.dumps({"model": "mistral-small-latest", "messages": [], "stream": True})
    with start(tmp_path, deployments) as gateway:
        with contextlib.suppress(http.client.HTTPException, OSError):  # the stream is cut
            request(
                gateway.url,
                "POST",
                "/mistral/v1/chat/completions",
                body,
                {**ADMIN, "Content-Type": "application/json"},
            )
        time.sleep(0.3)
        assert sum(chats(fake) for fake in upstreams.values()) == 1


def test_a_streamed_upload_answered_503_is_not_sent_again(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    for fake in upstreams.values():
        fake.set_response("/v1/files", '{"detail":"unavailable"}', status=503, method="POST")
        fake.configure(keep_bodies=False)
    deployments = [entry(name, upstreams[name]) for name in NAMES]
    boundary = "passgate-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="big.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    upload = head + b"x" * (20 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    with start(tmp_path, deployments) as gateway:
        reply = request(
            gateway.url,
            "POST",
            "/mistral/v1/files",
            upload,
            {**ADMIN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=60,
        )
        assert reply.status == 503
        assert reply.headers["x-passgate-attempts"] == "1"
        time.sleep(0.3)
        uploads = [r for f in upstreams.values() for r in f.requests if r.path == "/v1/files"]
        assert len(uploads) == 1


def upload_file(gateway: GatewayProcess, name: str) -> tuple[str, str]:
    """Upload a small file through the gateway: (its id, the deployment that holds it)."""
    boundary = "passgate-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        '{"custom_id":"1","body":{}}\n'
        f"\r\n--{boundary}--\r\n"
    ).encode()
    reply = request(
        gateway.url,
        "POST",
        "/mistral/v1/files",
        body,
        {**ADMIN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert reply.status == 200, reply.body
    data = reply.json()
    assert isinstance(data, dict)
    return str(data["id"]), reply.headers["x-passgate-deployment"]


def test_files_are_read_downloaded_and_deleted_where_they_were_made(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    deployments = [entry(name, upstreams[name]) for name in NAMES]
    path = config(tmp_path / "passgate.yaml", deployments)
    data_dir = tmp_path / "data"
    made: dict[str, str] = {}
    with GatewayProcess(gateway_env(), args=("--config", str(path)), data_dir=data_dir) as gateway:
        for index in range(6):
            file_id, home = upload_file(gateway, f"f{index}.jsonl")
            made[file_id] = home
        assert set(made.values()) == set(NAMES)  # the uploads went round
        for file_id, home in list(made.items())[:3]:
            assert_served_by_home(gateway, upstreams, file_id, home)
    # a new process on the same database still knows where each file is
    with GatewayProcess(gateway_env(), args=("--config", str(path)), data_dir=data_dir) as gateway:
        for file_id, home in list(made.items())[3:]:
            assert_served_by_home(gateway, upstreams, file_id, home)


def assert_served_by_home(
    gateway: GatewayProcess, upstreams: dict[str, FakeMistral], file_id: str, home: str
) -> None:
    """Read, download and delete ``file_id``: each call reaches ``home`` and no other."""
    for method, target in (
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/content"),
        ("DELETE", f"/v1/files/{file_id}"),
    ):
        before = {name: len(fake.requests) for name, fake in upstreams.items()}
        reply = request(gateway.url, method, "/mistral" + target, None, ADMIN)
        assert reply.status == 200, (target, reply.status, reply.body)
        assert reply.headers["x-passgate-deployment"] == home
        after = {name: len(fake.requests) for name, fake in upstreams.items()}
        assert {n for n in NAMES if after[n] != before[n]} == {home}


def test_listing_files_goes_to_the_primary(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    deployments = [
        entry("a", upstreams["a"]),
        entry("b", upstreams["b"], primary=True),
        entry("c", upstreams["c"]),
    ]
    with start(tmp_path, deployments) as gateway:
        for _ in range(4):
            reply = request(gateway.url, "GET", "/mistral/v1/files", None, ADMIN)
            assert reply.status == 200
            assert reply.headers["x-passgate-deployment"] == "b"
        pinned = request(
            gateway.url, "GET", "/mistral/v1/files", None, {**ADMIN, "x-passgate-deployment": "c"}
        )
        assert pinned.headers["x-passgate-deployment"] == "c"


def test_pins_sessions_and_the_keys_allowed_deployments(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    deployments = [entry(name, upstreams[name]) for name in NAMES]
    with start(tmp_path, deployments) as gateway:
        for _ in range(3):
            reply = chat(gateway, {"x-passgate-deployment": "b"})
            assert reply.status == 200 and reply.headers["x-passgate-deployment"] == "b"
        assert chats(upstreams["b"]) == 3
        # the control headers never reach the upstream
        assert all(r.header("x-passgate-deployment") is None for r in upstreams["b"].requests)
        unknown = chat(gateway, {"x-passgate-deployment": "nowhere"})
        assert unknown.status == 400 and "nowhere" in str(unknown.error["message"])

        sessions = {
            chat(gateway, {"x-passgate-session-id": "s-1"}).headers["x-passgate-deployment"]
            for _ in range(8)
        }
        assert len(sessions) == 1  # a session stays on one deployment

        key = admin(gateway, "POST", "/key/generate", {"allowed_deployments": ["a"]})["key"]
        own = {"Authorization": f"Bearer {key}"}
        refused = chat(gateway, {**own, "x-passgate-deployment": "b"})
        assert refused.status == 403 and refused.error["code"] == "deployment_not_allowed"
        for _ in range(4):  # unpinned, the key's calls stay on its deployments
            reply = chat(gateway, own)
            assert reply.status == 200 and reply.headers["x-passgate-deployment"] == "a"
        pinned = chat(gateway, {**own, "x-passgate-deployment": "a"})
        assert pinned.status == 200
        # the health route is the master key's
        health = request(gateway.url, "GET", "/health/deployments", None, own)
        assert health.status == 403


def test_a_deployment_priced_at_zero_costs_nothing(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    free = {"mistral-small-latest": {"input_cost_per_token": 0, "output_cost_per_token": 0}}
    deployments = [entry("a", upstreams["a"]), entry("c", upstreams["c"], pricing=free)]
    with start(tmp_path, deployments) as gateway:
        costs: dict[str, float] = {}
        for index in range(2):
            rid = f"priced-{index}"
            reply = chat(gateway, {"x-request-id": rid})
            name = reply.headers["x-passgate-deployment"]
            costs[name] = spend_row(gateway, rid)["cost"]
        assert costs["c"] == 0
        assert costs["a"] > 0


def test_two_instances_share_cooldowns_through_redis(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    require_redis()
    answer_chats(upstreams["b"], 429, **{"Retry-After": "5"})
    deployments = [entry(name, upstreams[name]) for name in NAMES]
    prefix = f"passgate-test-{time.monotonic_ns()}:"
    env = {"REDIS_URL": REDIS_URL, "PASSGATE_REDIS_PREFIX": prefix}
    with (
        start(tmp_path, deployments, **env) as first,
        start(tmp_path, deployments, **env) as second,
    ):
        limited = chat(first, {"x-passgate-deployment": "b"})
        assert limited.status == 429  # a pinned call gets the upstream's answer as it is
        time.sleep(0.8)  # a few of the second instance's reads of Redis
        assert deployment_states(second)["b"]["state"] == "cooling_down"
        for _ in range(20):
            assert chat(second).status == 200
        assert chats(upstreams["b"]) == 1


def test_the_official_sdk_keeps_a_file_and_its_batch_job_on_one_workspace(
    tmp_path: Path, upstreams: dict[str, FakeMistral]
) -> None:
    # gzip and chunked answers: what a real upstream may send the SDK (httpx asks for gzip)
    for fake in upstreams.values():
        fake.configure(gzip=True, chunked=True)
    deployments = [entry(name, upstreams[name]) for name in NAMES]
    content = b'{"custom_id":"1","body":{"messages":[]}}\n' * 30_000  # streamed: over 1 MiB
    with (
        start(tmp_path, deployments) as gateway,
        Mistral(api_key=MASTER_KEY, server_url=gateway.url + "/mistral") as sdk,
    ):
        homes = {}
        for index in range(3):
            created = sdk.files.upload(
                file={"file_name": f"batch-{index}.jsonl", "content": content}, purpose="batch"
            )
            home = next(n for n, f in upstreams.items() if created.id in f.files)
            homes[created.id] = home
        assert len(set(homes.values())) == 3
        for file_id, home in homes.items():
            others = {n: len(f.requests) for n, f in upstreams.items() if n != home}
            assert sdk.files.retrieve(file_id=file_id).id == file_id
            assert sdk.files.download(file_id=file_id).read() == content
            job = sdk.batch.jobs.create(
                input_files=[file_id], model="mistral-small-latest", endpoint="/v1/chat/completions"
            )
            assert sdk.batch.jobs.get(job_id=job.id).id == job.id
            sdk.batch.jobs.cancel(job_id=job.id)
            assert sdk.files.delete(file_id=file_id).deleted is True
            assert {n: len(f.requests) for n, f in upstreams.items() if n != home} == others
