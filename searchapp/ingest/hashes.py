"""Perceptual and pixel hashes, computed at index time on the EXIF-oriented photo.

The perceptual hash is the classic 64-bit pHash: a 32x32 grey thumbnail, its 2-D DCT, the 8x8
lowest frequencies, one bit per coefficient above their median. It is stored for all eight
rotations and flips of the thumbnail, so a copy turned by 90 degrees or mirrored is found by the
same Hamming search as a re-saved one (8 bytes each, 64 per photo).

The pixel hash identifies the same pixels in another container or with other metadata. It needs
the full-resolution pixels, so it is taken at index time when the photo was decoded whole, and
otherwise later, only for the few photos whose size and perceptual hash make it worth a decode.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from searchapp.ingest.load import LoadedImage

THUMB_SIDE = 32
LOW_FREQ = 8
VARIANTS = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip",
    "flip+rot90",
    "flip+rot180",
    "flip+rot270",
)


def grey_thumbnail(image: Image.Image) -> np.ndarray:
    """32x32 float32 grey thumbnail, area-averaged so that any source size gives the same one."""
    grey = image.convert("L")
    if min(grey.size) > 4 * THUMB_SIDE:  # cheap pre-shrink; BOX keeps it an area average
        grey = grey.reduce(max(1, min(grey.size) // (2 * THUMB_SIDE)))
    thumb = grey.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return np.asarray(thumb, dtype=np.float32)


def dihedral(thumb: np.ndarray) -> list[np.ndarray]:
    """The thumbnail under the eight rotations and flips, in the order of VARIANTS."""
    flipped = thumb[:, ::-1]
    return [np.rot90(thumb, k) for k in range(4)] + [np.rot90(flipped, k) for k in range(4)]


def phash_of_thumbnail(thumb: np.ndarray) -> bytes:
    import cv2

    coefficients = cv2.dct(np.ascontiguousarray(thumb, dtype=np.float32))[:LOW_FREQ, :LOW_FREQ]
    bits = coefficients > np.median(coefficients)
    return np.packbits(bits.reshape(-1)).tobytes()


def phash_variants(image: Image.Image) -> bytes:
    """Eight 8-byte pHashes, one per rotation/flip of the photo as displayed; identity first."""
    return b"".join(phash_of_thumbnail(view) for view in dihedral(grey_thumbnail(image)))


def pixel_hash(image: Image.Image) -> str:
    """Hash of the decoded RGB pixels and their size: equal for the same picture in any format."""
    rgb = image.convert("RGB")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{rgb.width}x{rgb.height}".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def hamming(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def photo_hashes(loaded: LoadedImage) -> tuple[bytes, str | None]:
    """What duplicate detection needs of a photo as it is read: the pHash of all eight turns,
    and the pixel hash where the decode was full size (later otherwise, see the module doc).
    The one place hashing happens at read time, for a new photo and for a backfill alike."""
    return phash_variants(loaded.image), pixel_hash(loaded.image) if loaded.scale == 1 else None
