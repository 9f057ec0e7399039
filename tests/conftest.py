"""Shared fixtures. Real photos come from scikit-image's bundled samples; nothing downloads."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.postgres import PostgresServer, server_binaries

SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "motorcycle_left")
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def sample_image(name: str) -> Image.Image:
    from skimage import data

    stereo = {"motorcycle_left": 0, "motorcycle_right": 1}
    array = data.stereo_motorcycle()[stereo[name]] if name in stereo else getattr(data, name)()
    return Image.fromarray(np.asarray(array)).convert("RGB")


def write_samples(folder: Path, names: tuple[str, ...] = SAMPLES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.jpg"
        sample_image(name).save(path, quality=92)
        paths.append(path)
    return paths


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Saved text towers go to a cache of the test run's own, not the user's."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only set of real photos; copy it before changing anything."""
    folder = tmp_path_factory.mktemp("samples")
    write_samples(folder)
    return folder


@pytest.fixture
def photos(tmp_path: Path, sample_dir: Path) -> Path:
    """A private, writable copy of the sample photos in nested folders."""
    root = tmp_path / "photos"
    (root / "animals").mkdir(parents=True)
    (root / "things" / "deep").mkdir(parents=True)
    shutil.copy(sample_dir / "chelsea.jpg", root / "animals" / "cat.jpg")
    shutil.copy(sample_dir / "coffee.jpg", root / "things" / "coffee.jpg")
    shutil.copy(sample_dir / "rocket.jpg", root / "things" / "deep" / "rocket.jpg")
    shutil.copy(sample_dir / "astronaut.jpg", root / "astronaut.jpg")
    shutil.copy(sample_dir / "camera.jpg", root / "camera.jpg")
    return root


@pytest.fixture(scope="session")
def cnn_encoder():
    from searchapp.encoders.base import EncoderOptions
    from searchapp.encoders.cnn import EfficientNetLite0Encoder

    return EfficientNetLite0Encoder(EncoderOptions())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_catalogs: run once on SQLite and once on a real PostgreSQL server"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "catalog_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_catalogs"
    ):
        metafunc.parametrize("catalog_backend", ["sqlite", "postgresql"])


@pytest.fixture
def catalog_backend() -> str:
    """The catalog's database: SQLite unless a test is marked both_catalogs."""
    return "sqlite"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    binaries = server_binaries()
    if binaries is None:
        message = "PostgreSQL's server is not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: its tests never skip there
        pytest.skip(message)
    server = PostgresServer(binaries)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db_url(catalog_backend: str, request: pytest.FixtureRequest) -> str | None:
    """The test library's --db: None is SQLite in the library folder, else a new database on
    the session's PostgreSQL server."""
    if catalog_backend == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def library(tmp_path: Path, cnn_encoder, db_url: str | None):
    """A fresh CNN library whose encoder is the session's already-loaded one."""
    from searchapp.library import Library

    lib = Library(tmp_path / "lib", db_url)
    lib._encoder = cnn_encoder
    lib.catalog.set_encoder_identity(cnn_encoder.identity)
    yield lib
    lib.close()


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SEARCHAPP_LIBRARY", None)
    env.pop("SEARCHAPP_DB", None)
    env.update(extra)
    return env


def searchapp_here(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`searchapp ARGS` run in this process, as `python -m searchapp ARGS` would run it: its
    exit code, stdout and stderr, in the environment `env` (default cli_env()). A new
    interpreter imports torch and torchvision for ~7 s before an index run does anything, and
    the suite runs the CLI a hundred times; tests of signals, pipes, kills, start-up and of
    settings read once at import (the Hugging Face cache's variables) keep real subprocesses."""
    from searchapp import cli

    saved = dict(os.environ)
    sigterm = signal.getsignal(signal.SIGTERM)  # the CLI turns SIGTERM into Ctrl-C
    torch = sys.modules.get("torch")  # `--threads N` sets torch's threads for the process
    threads = torch.get_num_threads() if torch is not None else None
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env if env is not None else cli_env())
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse's usage errors, and --help
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        signal.signal(signal.SIGTERM, sigterm)
        if threads is not None:
            sys.modules["torch"].set_num_threads(threads)
    return subprocess.CompletedProcess(["searchapp", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny open_clip model, registered as `tiny-test`."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny_clip")
    (folder / "tiny-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / "tiny-test.json")
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-test", pretrained=None)
    checkpoint = folder / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory: pytest.TempPathFactory, cnn_encoder):  # type: ignore[no-untyped-def]
    """The README's sample photos (examples/sample_photos.py: seven photos and three edited
    copies) in one hybrid CNN library, built once and shared. Tests search it and run `dupes`,
    whose only write, the remembered pixel checks, changes no answer."""

    from searchapp.library import Library
    from tests.integration.helpers import HYBRID, index

    folder = tmp_path_factory.mktemp("sample-library")
    photos = folder / "photos"
    script = Path(__file__).resolve().parents[1] / "examples" / "sample_photos.py"
    subprocess.run(
        [sys.executable, str(script), str(photos)], check=True, capture_output=True, timeout=120
    )
    lib = Library(folder / "lib")
    lib._encoder = cnn_encoder
    lib.catalog.set_encoder_identity(cnn_encoder.identity)
    index(lib, photos, options=HYBRID)
    yield lib, photos
    lib.close()
