"""A query's terms as vectors: words through the encoder's text tower, an image file through its
image tower (decoded once, kept for verification), a photo of the library through its stored
vectors; weighted terms combined into one unit vector."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from searchapp.errors import ImageLoadError, QueryError
from searchapp.ingest.load import LoadedImage, load_image
from searchapp.records import FileStat

if TYPE_CHECKING:
    from searchapp.encoders.base import ImageEncoder
    from searchapp.records import EncoderIdentity
    from searchapp.store.catalog import Catalog
    from searchapp.vectors.faiss_index import IndexStore


class WriteLock(Protocol):
    def holder(self) -> str | None: ...


class Library(Protocol):
    """What a search needs of a library (searchapp.library.Library is one): its catalog, its
    indexes, its encoder and its write lock. A protocol, so that this layer never imports the
    one above it."""

    catalog: Catalog

    @property
    def lock(self) -> WriteLock: ...

    def encoder(self) -> ImageEncoder: ...

    def tile_encoder(self) -> ImageEncoder: ...

    def indexes(self) -> IndexStore: ...

    def require_identity(self) -> EncoderIdentity: ...


def image_file(path: str) -> tuple[str, FileStat]:
    absolute = os.path.abspath(os.path.expanduser(path))
    try:
        st = os.stat(absolute)
    except FileNotFoundError:
        raise QueryError(f"query image {absolute} does not exist") from None
    except OSError as exc:
        raise QueryError(f"cannot read query image {absolute}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):  # /dev/zero never ends, a named pipe never opens
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
        raise QueryError(f"query image {absolute} is {kind}, not a photo file")
    return absolute, FileStat(absolute, st.st_size, st.st_mtime_ns)


def load_query(path: str, min_side: int | None) -> LoadedImage:
    absolute, stat = image_file(path)
    try:
        return load_image(stat, min_side=min_side)
    except ImageLoadError as exc:
        raise QueryError(f"query image {absolute}: {exc.reason}") from None


def query_vector_from_image(
    library: Library, path: str, min_side: int = 0
) -> tuple[np.ndarray, LoadedImage]:
    """Embed an image file on disk: (1, dim), and the photo, decoded once at min_side or the
    encoder's input size, whichever is larger, for verification to reuse."""
    encoder = library.encoder()
    loaded = load_query(path, max(min_side, encoder.input_size))
    return encoder.encode(encoder.preprocess(loaded.image)[None]).vectors, loaded


def like_vector(library: Library, path: str) -> tuple[np.ndarray, int]:
    absolute = os.path.abspath(os.path.expanduser(path))
    image = library.catalog.image_by_path(absolute)
    if image is None and not os.path.exists(absolute):
        raise QueryError(f"--like {absolute}: no such file, and no photo in the library there")
    if image is None:
        raise QueryError(
            f"--like {absolute}: that photo is not in the library; index it first, "
            "or use --image FILE"
        )
    dim = library.require_identity().dim
    vectors = library.catalog.region_vectors_of_image(image.id, "scene", dim)
    if not len(vectors):  # a video: what its frames show, together
        frames = library.catalog.region_vectors_of_image(image.id, "frame", dim)
        if not len(frames):
            raise QueryError(
                f"--like {absolute}: it has no vectors (kept out as low quality?); use --image FILE"
            )
        return combine([frame[None] for frame in frames], [1.0] * len(frames)), image.id
    return vectors[:1], image.id


# A query's vectors by term, kept for the other libraries of one encoder that one query searches
# (fanout.py): its words and images are embedded once, not once a library.
Memo = dict[tuple[object, ...], Any]


def term_vector(
    library: Library,
    source: str,
    value: str,
    image_side: int,
    memo: Memo | None = None,
    indexed_as: str | None = None,
) -> tuple[np.ndarray, int | None, LoadedImage | None]:
    """(1, dim) vector of a term (text, an image file, or a photo of the library to search
    `like`), the id of the photo it came from if indexed (at its path, or `indexed_as`), and
    the decoded photo of an image term (at image_side at least)."""
    if source == "like":
        return (*like_vector(library, value), None)
    memo = {} if memo is None else memo
    key = (source, value, image_side)
    if key not in memo and source == "text":
        memo[key] = (library.encoder().encode_text([value.strip()]), None)
    elif key not in memo:
        memo[key] = query_vector_from_image(library, value, image_side)
    vector, pixels = memo[key]
    if source == "text":
        return vector, None, None
    indexed = library.catalog.image_by_path(indexed_as or image_file(value)[0])
    return vector, indexed.id if indexed else None, pixels


def combine(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted sum of unit vectors, renormalised."""
    total = np.zeros_like(vectors[0][0], dtype=np.float64)
    for vector, weight in zip(vectors, weights, strict=True):
        total += weight * vector[0]
    norm = np.linalg.norm(total)
    if norm < 1e-6:
        raise QueryError("the terms cancel each other out; change the weights")
    return (total / norm).astype(np.float32)[None]


def tile_vector(
    library: Library, decoded: list[LoadedImage | None], weights: list[float]
) -> np.ndarray:
    """The image terms, decoded once already, embedded by the tiles' encoder and combined."""
    encoder = library.tile_encoder()
    vectors = []
    for pixels in decoded:
        assert pixels is not None  # spaces.tile_query asks only when every term is an image
        vectors.append(encoder.encode(encoder.preprocess(pixels.image)[None]).vectors)
    return combine(vectors, weights)
