"""Stoplight Prism, pinned in ``tests/prism``, serving an OpenAPI spec as a validating mock.

    ensure_prism()                      # npm ci when missing; no npm: skip (CI=true: fail)
    with PrismMock(load_spec(path), tmp_dir) as prism:
        prism.url                       # "http://127.0.0.1:PORT", static examples, --errors on
        prism.logs()                    # what Prism printed (its warnings and errors)

``python -m tests.support.prism`` installs Prism (what ``scripts/test`` runs before pytest).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import yaml

from tests.support.gateway import ROOT, free_port
from tests.support.openapi_calls import METHODS

PRISM_DIR = ROOT / "tests" / "prism"
PRISM_BIN = PRISM_DIR / "node_modules" / ".bin" / "prism"
# --ignore-scripts: Prism needs no install script, and one of its dependencies would
# otherwise report the install to an analytics service.
INSTALL_COMMAND = ("npm", "ci", "--prefix", "tests/prism", "--ignore-scripts", "--no-audit")
_START_TIMEOUT = 90.0  # Prism parses a large spec before it listens; CPUs here are shared
_STOP_TIMEOUT = 10.0


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing test tool is a failure)")
    pytest.skip(message)


def install_prism() -> bool:
    """Run ``npm ci`` for ``tests/prism`` when Prism is not installed; False without node/npm."""
    if PRISM_BIN.exists():
        return shutil.which("node") is not None
    if shutil.which("npm") is None or shutil.which("node") is None:
        return False
    print(f"installing Stoplight Prism: {' '.join(INSTALL_COMMAND)}", file=sys.stderr, flush=True)
    env = {**os.environ, "SCARF_ANALYTICS": "false"}
    subprocess.run(INSTALL_COMMAND, cwd=ROOT, env=env, check=True)
    return PRISM_BIN.exists()


def ensure_prism() -> Path:
    """The Prism executable, installed if needed; without npm the test skips (CI=true: fails)."""
    if not install_prism():
        _unavailable(
            "Stoplight Prism needs node and npm (Debian: apt-get install -y nodejs npm); "
            f"then install it with: {' '.join(INSTALL_COMMAND)}"
        )
    return PRISM_BIN


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as Prism reads it: an unquoted date stays the string it is written as.

    libyaml's parser when PyYAML has it: the pure-Python one takes seconds on a large spec.
    """


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_spec(path: Path) -> dict[str, Any]:
    """An OpenAPI document (YAML or JSON) as plain data."""
    with path.open(encoding="utf-8") as file:
        spec: dict[str, Any] = yaml.load(file, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader)
    return spec


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def resolve_local_defs(spec: dict[str, Any]) -> int:
    """Point ``#/$defs/X`` references at the ``$defs`` of the schema that encloses them.

    Some published specs embed a schema with its own ``$defs`` and refer to them as
    ``#/$defs/X``; without an ``$id`` that pointer names the document root, where nothing
    is, and Prism refuses to start. Each such reference (and discriminator mapping) is
    rewritten to the absolute pointer of the nearest enclosing ``$defs`` holding ``X``;
    nothing else changes. Returns how many were rewritten.
    """
    rewritten = 0

    def target(value: object, scope: dict[str, str]) -> str | None:
        if isinstance(value, str) and value.startswith("#/$defs/"):
            return scope.get(value.removeprefix("#/$defs/"))
        return None

    def walk(node: object, pointer: str, scope: dict[str, str]) -> None:
        nonlocal rewritten
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{pointer}/{index}", scope)
            return
        if not isinstance(node, dict):
            return
        defs = node.get("$defs")
        if isinstance(defs, dict):
            scope = scope | {name: f"#{pointer}/$defs/{_escape(name)}" for name in defs}
        for key, value in node.items():
            found = target(value, scope) if key == "$ref" else None
            if found is not None:
                node[key] = found
                rewritten += 1
                continue
            if key == "mapping" and isinstance(value, dict):
                for name, ref in value.items():
                    found = target(ref, scope)
                    if found is not None:
                        value[name] = found
                        rewritten += 1
            walk(value, f"{pointer}/{_escape(str(key))}", scope)

    walk(spec, "", {})
    return rewritten


def merge_alias_paths(spec: dict[str, Any]) -> list[str]:
    """Serve an operation given only under an SDK alias path (``/x/{id}#id``) at its HTTP path.

    Speakeasy aliases name one HTTP path twice (``/x`` and ``/x#stream``); Prism matches
    the ``#...`` literally, so no request reaches an alias. An alias operation whose method
    the HTTP path lacks is moved there; one the HTTP path already has stays where it is
    (Prism cannot serve both). Returns the ``"METHOD /path#alias"`` operations moved.
    """
    paths: dict[str, Any] = spec.get("paths", {})
    moved: list[str] = []
    for alias in [p for p in paths if "#" in p]:
        base = alias.split("#", 1)[0]
        target = paths.setdefault(base, {})
        for method in [m for m in paths[alias] if m in METHODS and m not in target]:
            target[method] = paths[alias].pop(method)
            moved.append(f"{method.upper()} {alias}")
        if not any(m in METHODS for m in paths[alias]):
            del paths[alias]
    return moved


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PrismMock:
    """``prism mock`` on a free loopback port: static examples (no ``-d``), ``--errors`` on.

    It serves ``spec`` after ``resolve_local_defs`` and ``merge_alias_paths`` (written as
    JSON into ``directory``), validates every request against it and answers 422 to an
    invalid one.
    """

    def __init__(self, spec: dict[str, Any], directory: Path) -> None:
        self._exe = ensure_prism()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spec_path = directory / "prism-spec.json"
        self.log_path = directory / "prism.log"
        served = json.loads(json.dumps(spec))  # a copy: the caller's spec stays as published
        resolve_local_defs(served)
        merge_alias_paths(served)
        self.spec_path.write_text(json.dumps(served), encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrismMock:
        """Start Prism and wait until it listens."""
        args = [str(self._exe), "mock", "--host", "127.0.0.1", "--port", str(self.port)]
        # warn: Prism's line per request costs more than the request; violations still show
        args += ["--errors", "--verboseLevel", "warn", str(self.spec_path)]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=PRISM_DIR, start_new_session=True
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prism exited with {self._proc.returncode}:\n{self.logs()}")
            if _listening(self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prism did not listen within {_START_TIMEOUT} s:\n{self.logs()}")

    def logs(self) -> str:
        """Everything Prism printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM to Prism's process group, then SIGKILL if it lingers."""
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(_STOP_TIMEOUT)

    def __enter__(self) -> PrismMock:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    # a failing npm ci stops the caller; node or npm missing is the tests' to report
    if install_prism():
        print(f"Stoplight Prism: {PRISM_BIN.relative_to(ROOT)}")
    else:
        print("Stoplight Prism: node and npm are missing; the spec-fidelity tests skip")
