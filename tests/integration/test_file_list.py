"""`index --files LIST`: a text or parquet list of photo files in place of folders to walk. A
list says what to index, not what a folder holds, and names what it cannot read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchapp.errors import UsageError
from searchapp.ingest.file_list import read_file_list
from searchapp.records import CatalogBatch, FileStat, ImageMeta, NewImage
from searchapp.store.catalog import Catalog
from tests.conftest import searchapp_here

NOT_UTF8 = b"caf\xe9.jpg"


def test_a_text_list_reads_as_a_user_writes_it(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "photos.txt"
    listing.write_bytes(
        b"\xef\xbb\xbf# taken on the trip, saved with a BOM\r\n"
        b"/abs/one.jpg\r\n"
        b"\n"
        b"rel/two.jpg\n"
        b"  spaced name .jpg\n"  # kept whole: names may start or end with spaces
        b"../" + NOT_UTF8 + b"\n"
        b"/abs/one.jpg\n"  # listed twice, indexed once
    )
    assert read_file_list(listing) == [
        "/abs/one.jpg",
        str(tmp_path / "lists" / "rel" / "two.jpg"),
        str(tmp_path / "lists" / "  spaced name .jpg"),
        os.fsdecode(os.path.join(os.fsencode(tmp_path), NOT_UTF8)),
    ]


@pytest.mark.parametrize("kind", ["string", "binary", "dictionary"])
def test_a_parquet_list_reads_its_path_column(tmp_path: Path, kind: str) -> None:
    listing = tmp_path / "photos.parquet"
    values = ["a/one.jpg", "/abs/two.jpg"]
    column = pa.array(values)
    if kind == "binary":
        column = pa.array([os.fsencode(v) for v in values], pa.binary())
    elif kind == "dictionary":  # as pandas writes a categorical column
        column = column.dictionary_encode()
    table = pa.table({"caption": ["x", "y"], "path": column})
    pq.write_table(table, listing)
    assert read_file_list(listing) == [str(tmp_path / "a" / "one.jpg"), "/abs/two.jpg"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("l.txt", b"/a.jpg\ns3://bucket/b.jpg\n", r"line 2: s3://bucket/b.jpg is an object-store"),
        ("l.txt", b"# nothing\n\n", "names no file"),
        ("l.parquet", b"not parquet at all", "is not a parquet file"),
        ("missing.txt", None, "cannot read the file list"),
    ],
)
def test_a_list_it_cannot_take_says_why(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(UsageError, match=message):
        read_file_list(tmp_path / name)


def test_a_parquet_list_without_paths_names_its_columns(tmp_path: Path) -> None:
    pq.write_table(pa.table({"url": ["a.jpg"]}), tmp_path / "l.parquet")
    with pytest.raises(UsageError, match=r"no `path` column \(it has url\)"):
        read_file_list(tmp_path / "l.parquet")
    pq.write_table(pa.table({"path": [1, 2]}), tmp_path / "l.parquet")
    with pytest.raises(UsageError, match="holds int64, not paths"):
        read_file_list(tmp_path / "l.parquet")


def test_a_catalog_takes_thousands_of_file_roots(tmp_path: Path) -> None:
    """Each listed file is a root; SQLite stops at an expression depth of 1000."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    batch = CatalogBatch()
    paths = [f"/p/{i:04d}.jpg" for i in range(1500)]
    for i, path in enumerate(paths):
        meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime", regions_pending="tile")
        batch.new.append(NewImage(FileStat(path, 1, 1), f"h{i}", meta, []))
    catalog.apply(batch)
    assert sorted(catalog.images_under(paths[100:])) == paths[100:]
    assert [p.path for p in catalog.awaiting_regions(paths[:1200])] == paths[:1200]
    assert catalog.failures_under(paths) == {}
    catalog.close()


def test_cli_indexes_the_listed_files_and_keeps_the_unlisted(photos: Path, tmp_path: Path) -> None:
    library = str(tmp_path / "lib")
    listing = tmp_path / "list.txt"
    listing.write_text("photos/animals/cat.jpg\nphotos/camera.jpg\nphotos/gone.jpg\n")
    done = searchapp_here("index", "--files", str(listing), "--library", library, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["new"] == 2
    assert "gone.jpg" in done.stderr and "no such file" in done.stderr  # named, not fatal
    listing.write_text(f"{photos / 'astronaut.jpg'}\n")
    done = searchapp_here("index", "--files", str(listing), "--library", library, "--json")
    summary = json.loads(done.stdout)
    assert summary["new"] == 1 and summary["deleted"] == 0  # a list adds; it does not prune
    stats = json.loads(searchapp_here("stats", "--library", library, "--json").stdout)
    assert stats["images"] == 3
    # a folder and a list together; nothing at all is refused before a library is made
    done = searchapp_here(
        "index", str(photos / "things"), "--files", str(listing), "--library", library, "--json"
    )
    assert json.loads(done.stdout)["new"] == 2
    # a list that names files under a folder also given: each file once, no failure
    listing.write_text(f"{photos / 'things' / 'coffee.jpg'}\n{photos / 'camera.jpg'}\n")
    done = searchapp_here(
        "index", str(photos), "--files", str(listing), "--library", library, "--json"
    )
    summary = json.loads(done.stdout)
    assert (summary["failed"], summary["new"], summary["unchanged"]) == (0, 0, 5), done.stderr
    errors = searchapp_here("errors", "--library", library, "--json").stdout
    assert json.loads(errors) == {"errors": []}
    empty = searchapp_here("index", "--library", str(tmp_path / "none"))
    assert empty.returncode == 2 and "--files LIST" in empty.stderr
    assert not (tmp_path / "none").exists()
