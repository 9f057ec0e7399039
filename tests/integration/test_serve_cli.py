"""`searchapp serve` as a user starts it: a real process on a real port."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.conftest import cli_env

ADDRESS = re.compile(r"at (http://\S+) \(Ctrl-C stops\)")


@contextmanager
def serving(library: Any, *flags: str) -> Iterator[str]:
    command = [sys.executable, "-m", "searchapp", "serve", "--library", str(library), *flags]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        found = ADDRESS.search(line)
        assert found, (
            f"no address printed: {line!r} {process.stderr.read() if process.stderr else ''}"
        )
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0  # Ctrl-C ends it cleanly


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_answers_on_loopback_without_a_token(sample_library: Any) -> None:
    lib, _photos = sample_library
    with serving(lib.directory, "--port", "0") as address:
        assert address.startswith("http://127.0.0.1:") and "token" not in address
        status, stats = _get(address + "api/stats")
        assert status == 200 and stats["images"] == 10


def test_beyond_loopback_every_request_needs_the_printed_token(sample_library: Any) -> None:
    lib, _photos = sample_library
    with serving(lib.directory, "--host", "0.0.0.0", "--port", "0") as address:
        base, token = address.split("?token=")
        assert base.startswith(f"http://{socket.gethostname()}:")  # what other machines use
        port = base.rstrip("/").rsplit(":", 1)[1]
        local = f"http://127.0.0.1:{port}/api/stats"
        status, answer = _get(local)
        assert status == 401 and "token" in answer["error"]
        assert _get(local, token)[0] == 200


def test_a_taken_port_or_a_missing_library_is_an_error_in_words(
    sample_library: Any, tmp_path: Any
) -> None:
    lib, _photos = sample_library
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        command = [sys.executable, "-m", "searchapp", "serve", "--library", str(lib.directory)]
        busy = subprocess.run(
            [*command, "--port", port], capture_output=True, text=True, env=cli_env(), timeout=60
        )
    assert busy.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr and "--port" in busy.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "searchapp", "serve", "--library", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert missing.returncode == 1 and "no library at" in missing.stderr
    assert not (tmp_path / "none").exists()


def test_the_listening_socket_gets_nodelay_answers() -> None:
    """asyncio sets TCP_NODELAY only on sockets made as IPPROTO_TCP; on one made without it
    every answer on a kept-alive connection waited for the client's delayed ACK (44 ms a
    request in benchmarks/web_speed.py, against 2 ms)."""
    from searchapp.cli_serve import _listen

    listening = _listen("127.0.0.1", 0)
    try:
        assert listening.proto == socket.IPPROTO_TCP
    finally:
        listening.close()
