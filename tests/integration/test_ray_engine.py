"""`index --engine ray`: Ray Data reads and embeds, the library commits, and the library is
the one a local run makes. Ray runs for real here, in local mode on this machine's cores."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from PIL import Image

from searchapp.ingest.engines.ray_engine import RayOptions
from searchapp.ingest.engines.shards import ShardFolder
from searchapp.library import Library
from tests.conftest import cli_env, searchapp_here
from tests.integration.helpers import HYBRID, Recorder, assert_consistent, index


def regions_by_photo(lib: Library) -> dict[str, list[tuple[tuple, np.ndarray]]]:
    """Every photo's regions as (kind, box, label) and stored vector, in a stable order."""
    found: dict[str, list[tuple[tuple, np.ndarray]]] = {}
    for image in lib.catalog.all_images():
        details = lib.catalog.photo_details(image.id)
        assert details is not None
        regions = []
        for region in details.regions:
            vector = lib.indexes().get(region.kind, persist=False).reconstruct(region.id)
            regions.append(((region.kind, region.bbox, region.label or ""), vector))
        found[image.path] = sorted(regions, key=lambda pair: (pair[0], pair[1].tolist()))
    return found


def assert_same_library(ours: Library, reference: Library) -> None:
    """The same photos with the same metadata, the same failures, every region alike, and
    vectors within 1e-3 of each other."""
    mine, theirs = regions_by_photo(ours), regions_by_photo(reference)
    assert sorted(mine) == sorted(theirs)
    assert {f.path for f in ours.failures()} == {f.path for f in reference.failures()}
    metas = {i.path: ours.catalog.photo_details(i.id).meta for i in ours.catalog.all_images()}  # type: ignore[union-attr]
    for image in reference.catalog.all_images():
        assert metas[image.path] == reference.catalog.photo_details(image.id).meta  # type: ignore[union-attr]
    for path, regions in theirs.items():
        assert [key for key, _ in mine[path]] == [key for key, _ in regions], path
        for (key, vector), (_, other) in zip(regions, mine[path], strict=True):
            np.testing.assert_allclose(other, vector, atol=1e-3, err_msg=f"{path} {key}")


NOT_UTF8 = b"caf\xe9.jpg"  # Latin-1: a name Arrow's strings would refuse


@pytest.fixture
def folder(photos: Path) -> Path:
    """The sample photos, two files of the same bytes, a name that is not UTF-8, and a broken
    file."""
    shutil.copy(photos / "camera.jpg", photos / "things" / "camera copy.jpg")
    shutil.copy(photos / "things" / "coffee.jpg", os.path.join(os.fsencode(photos), NOT_UTF8))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return photos


@pytest.fixture
def local_library(tmp_path: Path, folder: Path, cnn_encoder) -> Iterator[Library]:
    lib = Library(tmp_path / "local")
    lib._encoder = cnn_encoder
    lib.catalog.set_encoder_identity(cnn_encoder.identity)
    index(lib, folder, options=HYBRID)
    yield lib
    lib.close()


def test_cli_ray_run_makes_the_local_library(
    tmp_path: Path, folder: Path, local_library: Library
) -> None:
    """The command a user runs, on a parquet list of the folder's files (as a cluster's users
    give their photos): Ray started here, stopped after, its shards gone at the end."""
    library = tmp_path / "ray"
    listing = tmp_path / "photos.parquet"
    files = [
        os.path.relpath(os.path.join(top, name), os.fsencode(tmp_path))
        for top, _, names in os.walk(os.fsencode(folder))
        for name in names
    ]
    assert NOT_UTF8 in [os.path.basename(f) for f in files]  # paths as bytes: any name goes
    pq.write_table(pa.table({"path": pa.array(files, pa.binary())}), listing)
    command = ["index", "--files", str(listing), "--library", str(library), "--engine", "ray"]
    command.append("--json")
    done = subprocess.run(
        [sys.executable, "-m", "searchapp", *command, "--workers", "2"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert '"new": 7' in done.stdout and '"failed": 1' in done.stdout
    assert "broken.jpg" in done.stderr  # named, as a local run names it
    assert not (library / "shards").exists()
    with Library(library) as lib:
        assert_same_library(lib, local_library)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ray_cluster() -> Iterator[tuple[dict[str, str], subprocess.Popen[str]]]:
    """A cluster of one node of one CPU, started as a cluster's head is (`ray start --head`),
    on ports and in a folder of its own, with token authentication (a new cluster's default
    where a token is at hand): (what a node's user has in the environment, the head)."""
    port = _free_port()
    # the user's part: Ray enables a token by itself only for the cluster it finds unaided
    node_user = {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token"}
    node_user["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    temp = tempfile.mkdtemp(prefix="rayc", dir="/tmp")  # Ray's socket paths must stay short
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            *("start", "--head", "--block", "--num-cpus=1", f"--port={port}", f"--temp-dir={temp}"),
            *("--include-dashboard=false", "--disable-usage-stats"),
            f"--dashboard-agent-listen-port={_free_port()}",
            # with ray[client] installed, a head takes Ray Client's port, 10001 by default;
            # without it, giving the port is refused
            *([f"--ray-client-server-port={_free_port()}"] if find_spec("grpc") else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**cli_env(), "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "token"}
        | {"RAY_AUTH_TOKEN": node_user["RAY_AUTH_TOKEN"]},
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(head.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("Ray runtime started" in line for line in list(said)):
            assert head.poll() is None and time.monotonic() < deadline, "".join(said)
            time.sleep(0.5)
        yield node_user, head
    finally:
        head.terminate()  # --block stops the node's processes on its way out
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        # and the rest of its session: its agents would wait 30 s on a GCS that has gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        while time.monotonic() < deadline + 60 and _group_alive(head.pid):
            time.sleep(0.2)
        if head.stdout:
            head.stdout.close()
        shutil.rmtree(temp, ignore_errors=True)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_same_command_runs_on_a_running_cluster(
    tmp_path: Path,
    folder: Path,
    local_library: Library,
    ray_cluster: tuple[dict[str, str], subprocess.Popen[str]],
) -> None:
    """`--address auto` on a node of a cluster that `ray start --head` started: the run takes
    the cluster's resources, not this machine's, leaves the cluster running, and gives the
    library a local run makes."""
    node_user, head = ray_cluster
    library = tmp_path / "cluster"
    command = ["index", str(folder), "--library", str(library), "--engine", "ray"]
    done = subprocess.run(
        [sys.executable, "-m", "searchapp", *command, "--address", "auto", "--json"],
        capture_output=True,
        text=True,
        env=cli_env(**node_user),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "ray: auto: 1 CPU, 0 GPUs for the encoders; 1 actor embeds 8 photos" in done.stderr
    assert head.poll() is None  # the cluster is the cluster's, not the run's
    with Library(library) as lib:
        assert_same_library(lib, local_library)
    # without the cluster's token: the message says where it goes, with no traceback
    tokenless = {**node_user, "HOME": str(tmp_path)}  # no ~/.ray/auth_token there either
    del tokenless["RAY_AUTH_TOKEN"]
    fresh = ["index", str(folder), "--library", str(tmp_path / "tokenless"), "--engine", "ray"]
    refused = subprocess.run(  # a library with photos to embed: one that has none starts no Ray
        [sys.executable, "-m", "searchapp", *fresh, "--address", "auto"],
        capture_output=True,
        text=True,
        env=cli_env(**tokenless),
        timeout=600,
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "Ray could not start on auto: " in refused.stderr
    assert "(the cluster's token goes in RAY_AUTH_TOKEN or ~/.ray/auth_token)" in refused.stderr


@pytest.fixture(scope="session")
def killed_sessions() -> Iterator[list[tuple[int, float]]]:
    """The sessions of drivers killed in this module, with when. Ray's two agents outlive
    their raylet by a minute: each reports its death to a GCS that is gone, with a 60 s timeout
    (ray._private.process_watcher). Their end is awaited here, once the worker's other tests
    are done (minutes later, as a rule), rather than idly in the test that killed them."""
    killed: list[tuple[int, float]] = []
    yield killed
    for session, killed_at in killed:
        while _session_processes(session) and time.monotonic() < killed_at + 120:
            time.sleep(1)
        assert _session_processes(session) == [], "Ray's processes outlived their driver"


RAY_AGENTS = ("ray::DashboardA", "ray::RuntimeEnv")  # ps's 15-character names


def test_driver_killed_9_leaves_no_ray_behind_and_resumes_from_its_shards(
    tmp_path: Path, sample_dir: Path, killed_sessions: list[tuple[int, float]]
) -> None:
    """kill -9 of the command once its first shard is written: Ray's processes go with it,
    and the next run takes the shards' rows instead of embedding them again."""
    photos = tmp_path / "photos"
    photos.mkdir()
    with Image.open(sample_dir / "astronaut.jpg") as astronaut:
        for i in range(40):  # small crops: fast to embed, but four shards of ten
            astronaut.crop((i * 6, i * 4, i * 6 + 240, i * 4 + 240)).save(photos / f"p{i:02d}.jpg")
    library = tmp_path / "lib"
    command = ["index", str(photos), "--library", str(library), "--engine", "ray", "-q"]
    flags = ["--regions", "scene", "--workers", "2", "--json"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "searchapp", *command, *flags],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ray's processes are in its session: counted after the kill
    )
    shards = ShardFolder(library / "shards")
    deadline = time.monotonic() + 300
    while not shards.files():
        assert driver.poll() is None and time.monotonic() < deadline, "no shard came"
        time.sleep(0.02)
    driver.kill()
    driver.wait(timeout=60)
    killed_sessions.append((driver.pid, time.monotonic()))
    assert list(shards.rows())

    done = searchapp_here(*command, *flags)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["from_shards"] >= 1 and summary["new"] + summary["unchanged"] == 40
    assert not shards.files()
    checked = searchapp_here("check", "--library", str(library))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with Library(library) as lib:
        assert len(lib.catalog.all_images()) == 40
    # Ray's processes go with the driver: its raylet, GCS and workers at once, its agents
    # within a minute (awaited by killed_sessions)
    left = [line.split()[2] for line in _session_processes(driver.pid)]
    assert set(left) <= set(RAY_AGENTS), left


def _session_processes(session: int) -> list[str]:
    listed = subprocess.run(["ps", "-eo", "sid=,pid=,comm="], capture_output=True, text=True)
    return [line for line in listed.stdout.splitlines() if int(line.split()[0]) == session]


@pytest.fixture(scope="module")
def ray_here() -> Iterator[None]:
    """One Ray for the in-process runs below (the engine uses a session it finds). One CPU:
    one actor loads the models, not two; the CLI's runs above take two workers."""
    on_sigterm = signal.getsignal(signal.SIGTERM)  # ray.init takes it over
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    signal.signal(signal.SIGTERM, on_sigterm)


class Killed(BaseException):
    """What a kill -9 leaves: no handler runs, nothing of the batch is committed."""


def test_killed_run_resumes_from_its_shards_without_duplicates(
    tmp_path: Path, folder: Path, local_library: Library, cnn_encoder, ray_here: None
) -> None:
    shards = tmp_path / "shards"
    engine = RayOptions(shards=shards)
    options = dataclasses.replace(HYBRID, commit_every=100)
    lib = Library(tmp_path / "ray")
    lib._encoder = cnn_encoder  # the driver's; the workers load their own
    lib.catalog.set_encoder_identity(cnn_encoder.identity)
    with pytest.raises(Killed):
        # killed as the first shard comes back, before its batch is committed
        index(lib, folder, options=options, engine=engine, callbacks=_killing())
    lib.close()
    written = ShardFolder(shards).files()
    assert written
    with Library(tmp_path / "ray") as killed:
        assert killed.catalog.all_images() == []
    # a retried task's answer, written a second time
    shutil.copy(written[0], shards / f"retried-{written[0].name}")
    left = sum(1 for _ in ShardFolder(shards).rows())

    with Library(tmp_path / "ray") as resumed:
        resumed._encoder = cnn_encoder
        summary = index(resumed, folder, options=options, engine=engine)
        assert summary.from_shards == left
        assert summary.new == 7 and summary.failed == 1
        assert_same_library(resumed, local_library)
        assert not shards.exists()

        # known bytes: a moved photo keeps its row, a new copy is cloned; neither is embedded
        (folder / "moved").mkdir()
        shutil.move(folder / "astronaut.jpg", folder / "moved" / "astronaut.jpg")
        shutil.copy(folder / "things" / "deep" / "rocket.jpg", folder / "rocket again.jpg")
        summary = index(resumed, folder, options=options, engine=engine)
        assert (summary.moved, summary.reused, summary.embedded) == (1, 1, 0)
        assert_consistent(resumed)


def _killing():  # type: ignore[no-untyped-def]
    recorder = Recorder()
    callbacks = recorder.callbacks()

    def on_advance(n: int) -> None:
        raise Killed

    callbacks.on_advance = on_advance
    return callbacks


def test_engine_flags_are_checked_before_anything_loads(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = str(tmp_path / "lib")
    stray = searchapp_here("index", str(photos), "--library", library, "--address", "auto")
    assert stray.returncode == 2 and "--address and --shards go with --engine ray" in stray.stderr
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    missing = searchapp_here("index", str(photos), "--library", library, "--engine", "ray")
    assert missing.returncode == 2 and "pip install 'searchapp[ray]'" in missing.stderr
    assert not (tmp_path / "lib").exists()  # said before a library was made
    # Ray Data's executor runs in the driver, which Ray Client keeps off the cluster: the way
    # round is said before anything loads, with the job-submission address of that host
    monkeypatch.undo()
    client = searchapp_here(
        "index",
        str(photos),
        "--library",
        library,
        "--engine",
        "ray",
        "--address",
        "ray://head:10001",
    )
    assert client.returncode == 2, client.stderr
    assert "ray job submit --address http://head:8265 -- searchapp index" in client.stderr
    # `auto` is RAY_ADDRESS, as Ray reads it: a Ray Client address there is said the same way
    via_env = searchapp_here(
        *("index", str(photos), "--library", library, "--engine", "ray", "--address", "auto"),
        env=cli_env(RAY_ADDRESS="ray://[fd00::2]:10001"),
    )
    assert via_env.returncode == 2, via_env.stderr
    assert "--address auto (RAY_ADDRESS=ray://[fd00::2]:10001): Ray Data does not" in (
        via_env.stderr
    )
    assert "ray job submit --address http://[fd00::2]:8265 --" in via_env.stderr
    assert not (tmp_path / "lib").exists()
