"""Starting the systems under test: nginx, the Python upstream, passgate and LiteLLM."""

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.procs import Service, Services, free_port, http_status

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-bench"
LITELLM_VENV = ROOT / "bench" / ".litellm-venv"


def start_nginx(
    services: Services, nginx: str, name: str, config: Callable[[Path], str]
) -> Service:
    """nginx in the foreground with `config(prefix)`; ready once its pid file exists."""
    prefix = services.workdir / name.replace(" ", "-")
    prefix.mkdir(mode=0o755)
    conf = prefix / "nginx.conf"
    conf.write_text(config(prefix))
    pid = prefix / "nginx.pid"
    return services.start(name, [nginx, "-p", str(prefix), "-c", str(conf)], ready=pid.exists)


def start_python_upstream(services: Services, gap_ms: float) -> tuple[Service, int]:
    """The streaming / upload upstream (bench/upstream.py) in its own process."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--gap-ms", str(gap_ms)]
    service = services.start(
        "python upstream",
        argv,
        env={"PYTHONPATH": str(ROOT)},
        ready=lambda: http_status(f"http://127.0.0.1:{port}/ready") == 200,
    )
    return service, port


def start_passgate(
    services: Services,
    name: str,
    upstream: str,
    accounting: bool = True,
    workers: int = 2,
    extra_env: dict[str, str] | None = None,
    config: Path | None = None,
) -> tuple[Service, str]:
    """passgate with production settings (2 workers, master key) in front of `upstream`,
    with the settings of a `config` file when given."""
    port = free_port()
    data_dir = services.workdir / f"data-{port}"
    env = {
        "MISTRAL_API_BASE": upstream,
        "MISTRAL_API_KEY": "x",
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_DATA_DIR": str(data_dir),
        "PASSGATE_ACCOUNTING": "true" if accounting else "false",
        **(extra_env or {}),
    }
    argv = [str(Path(sys.executable).with_name("passgate")), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", str(workers)]
    if config is not None:
        argv += ["--config", str(config)]
    url = f"http://127.0.0.1:{port}"
    service = services.start(
        name, argv, env=env, ready=lambda: http_status(f"{url}/health/readiness") == 200
    )
    return service, url


def generate_key(url: str, fields: dict[str, object] | None = None) -> tuple[str | None, str]:
    """(a virtual key from POST /key/generate with ``fields``, or None; why there is none)."""
    request = urllib.request.Request(  # noqa: S310 (loopback http)
        f"{url}/key/generate",
        data=json.dumps(fields or {}).encode(),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            key = json.loads(response.read()).get("key")
    except urllib.error.HTTPError as error:
        if error.code in (404, 405):
            return None, "n/a (virtual keys not built yet)"
        return None, f"n/a (POST /key/generate answered {error.code})"
    except (OSError, ValueError, AttributeError) as error:
        return None, f"n/a (POST /key/generate failed: {error})"
    if not isinstance(key, str):
        return None, "n/a (POST /key/generate gave no key)"
    return key, "generated"


def ensure_litellm() -> tuple[Path | None, str]:
    """LiteLLM's proxy installed in bench/.litellm-venv: (the `litellm` command, or None; why)."""
    command = LITELLM_VENV / "bin" / "litellm"
    if command.exists():
        return command, "installed"
    print("installing litellm[proxy] into bench/.litellm-venv (once) ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(LITELLM_VENV)],
        [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"install failed: {error}"
        if done.returncode != 0:
            return None, f"install failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return (command, "installed") if command.exists() else (None, "install gave no `litellm`")


def start_litellm(
    services: Services, command: Path, name: str, upstream: str
) -> tuple[Service, str]:
    """LiteLLM's proxy (2 workers, master key, no network calls of its own) before `upstream`."""
    port = free_port()
    env = {
        "MISTRAL_API_BASE": upstream,
        "MISTRAL_API_KEY": "x",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
    }
    argv = [str(command), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "2"]
    argv += ["--telemetry", "False"]
    url = f"http://127.0.0.1:{port}"
    service = services.start(
        name,
        argv,
        env=env,
        ready=lambda: http_status(f"{url}/health/readiness") == 200,
        timeout=180,
    )
    return service, url
