"""The spend writer and the limits process start the same way: bad settings end them at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("passgate.runtime.spend_process", "passgate spend writer"),
        ("passgate.runtime.limits_process", "passgate limits process"),
    ],
)
def test_settings_handed_over_that_are_not_valid_end_the_child_with_status_2(
    module: str, name: str
) -> None:
    read, write = os.pipe()
    os.write(write, b'{"master_key": "sk-not-to-be-shown", "port": "not a port"}')
    os.close(write)
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, "--fd", "0", "--settings-fd", str(read)],
            pass_fds=[read],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(read)
    assert done.returncode == 2
    assert done.stderr.decode() == f"{name}: the settings handed over are not valid\n"
