"""Zero-shot tags: a CLIP library scores every photo's scene against a vocabulary (ImageNet's
classes by default, or the user's list) and keeps the best five as the scene's labels, where a
CNN library keeps its classifier's. `search --tag`, word search by labels and the clusters'
names then read both kinds of library alike.

Tags are derived from stored vectors, never from pixels: new photos are tagged at the end of
each index run, an older library's photos on its next run, and a new vocabulary re-tags every
photo without re-reading one. The vocabulary's text embeddings are computed once per library
and kept beside the catalog (a cache: deleting it costs one recomputation)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from searchapp.encoders import zero_shot
from searchapp.encoders.registry import supports_text
from searchapp.errors import UsageError
from searchapp.records import TAG_MIN_PROB, EncoderIdentity, Filters, RegionHit
from searchapp.store.explore_rows import TAG_VOCABULARY_SETTING

if TYPE_CHECKING:
    from searchapp.encoders.base import EncoderOptions, ImageEncoder
    from searchapp.store.catalog import Catalog


class LibraryTags:
    catalog: Catalog
    directory: Path

    @property
    def encoder_identity(self) -> EncoderIdentity | None:
        raise NotImplementedError

    def encoder(
        self, name: str | None = None, options: EncoderOptions | None = None
    ) -> ImageEncoder:
        raise NotImplementedError

    def require_identity(self) -> EncoderIdentity:
        raise NotImplementedError

    def tag_vocabulary(self) -> zero_shot.Vocabulary:
        saved = self.catalog.get_setting(TAG_VOCABULARY_SETTING)
        if not saved:
            return zero_shot.imagenet_vocabulary()
        data = json.loads(saved)
        return zero_shot.Vocabulary(tuple(data["names"]), tuple(data["names"]), data["source"])

    def use_tag_file(self, path: Path, encoder_name: str) -> bool:
        """Tag with the tags listed in a file from now on; True when that changed the
        vocabulary (every photo is then re-tagged by the run)."""
        if not supports_text(encoder_name):
            raise UsageError(
                f"--tags {path}: tags are scored by a CLIP library's text tower; this library's "
                f"encoder ({encoder_name}) tags its photos with its ImageNet labels instead"
            )
        try:
            chosen = zero_shot.read_vocabulary(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"--tags {path}: {exc}") from exc
        if chosen.names == self.tag_vocabulary().names:
            return False
        payload = {"source": str(path.absolute()), "names": list(chosen.names)}
        self.catalog.set_setting(TAG_VOCABULARY_SETTING, json.dumps(payload))
        self.catalog.drop_labels("scene")
        return True

    def tag_photos(
        self,
        options: EncoderOptions | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Tag the scenes that have no labels (a CLIP library's); how many were tagged."""
        identity = self.encoder_identity
        if identity is None or not supports_text(identity.name):
            return 0
        region_ids, vectors = self.catalog.untagged_scenes(identity.dim)
        if not len(region_ids):
            return 0
        vocabulary = self.tag_vocabulary()
        matrix = self._tag_matrix(identity, vocabulary, options, on_progress)
        found = zero_shot.top_tags(vectors, matrix, vocabulary.names)
        self.catalog.add_labels(dict(zip(region_ids.tolist(), found, strict=True)))
        return len(region_ids)

    def _tag_matrix(
        self,
        identity: EncoderIdentity,
        vocabulary: zero_shot.Vocabulary,
        options: EncoderOptions | None,
        on_progress: Callable[[int, int], None] | None,
    ) -> np.ndarray:
        key = json.dumps([identity.__dict__, vocabulary.digest], sort_keys=True)
        cache = self.directory / f"tags-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"
        if cache.exists():
            try:
                matrix = np.load(cache)
                if matrix.shape == (len(vocabulary.names), identity.dim):
                    return np.asarray(matrix, dtype=np.float32)
            except (OSError, ValueError):
                pass  # a damaged cache is recomputed
        model = self.encoder(identity.name, options)
        matrix = zero_shot.text_matrix(model.encode_text, vocabulary, on_progress)
        partial = cache.with_suffix(".part.npy")
        try:
            np.save(partial, matrix)
            partial.replace(cache)
        except OSError:  # a full disk: recomputed next time, the tags are stored regardless
            partial.unlink(missing_ok=True)
        return matrix

    def tagged_photos(
        self, filters: Filters, k: int, kinds: tuple[str, ...] = ("scene", "frame")
    ) -> list[tuple[str, float, str]]:
        """(path, probability, tag) of the photos (scene) and videos (their best frame) that
        carry the first --tag and pass every filter, the most probable first."""
        if not filters.tags:
            raise UsageError("give --tag TAG, or something to search for")
        self.require_identity()  # an empty library says so, rather than "no photo tagged"
        floors = dict.fromkeys(kinds, TAG_MIN_PROB)
        found = self.catalog.label_scores(filters.tags[0], list(kinds), filters, floors)
        hits = self.catalog.hydrate({region: prob for region, (prob, _) in found.items()})
        named = {region: name for region, (_, name) in found.items()}
        best: dict[int, RegionHit] = {}  # a video's frames: its best one
        for hit in hits:
            if hit.image_id not in best or hit.score > best[hit.image_id].score:
                best[hit.image_id] = hit
        ranked = sorted(best.values(), key=lambda h: (-h.score, h.path))[:k]
        return [(h.path, h.score, named[h.region_id]) for h in ranked]
