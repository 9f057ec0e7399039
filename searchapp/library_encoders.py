"""The Library's encoders: the one its vectors come from, recorded on first use and checked
on every load after, and, in a CLIP library, the CNN its tiles are encoded with.

Tiles serve image queries, which need no text space, and the CNN encodes a tile (or pools it
from one pass over the photo) for a fraction of a ViT's cost: a CLIP library's tiles are in the
CNN's space (encoders/registry.py). The choice is recorded with the first tile, so a library
stays as it began: one whose tiles were made by CLIP before keeps them there."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from searchapp.encoders.base import EncoderOptions, ImageEncoder
from searchapp.encoders.devices import Device, pick_device
from searchapp.encoders.registry import (
    AUTO,
    choose_auto,
    create_encoder,
    split_name,
    tile_encoder_name,
)
from searchapp.errors import EncoderMismatchError, SearchappError
from searchapp.ingest.regions import REGION_KINDS
from searchapp.records import EncoderIdentity

if TYPE_CHECKING:
    from searchapp.store.catalog import Catalog
    from searchapp.vectors.faiss_index import IndexStore


class _Lock(Protocol):
    @property
    def held(self) -> bool: ...

    def holder(self) -> str | None: ...


class LibraryEncoders:
    catalog: Catalog
    directory: Path
    lock: _Lock
    _encoder: ImageEncoder | None
    _tile_encoder: ImageEncoder | None
    _identity: EncoderIdentity | None
    _indexes: IndexStore | None
    # where a query's models run (`search --device`); an index run passes its own options
    query_device: str = "cpu"
    _device_asked: str | None = None  # the --device the loaded encoder was made for

    @property
    def encoder_identity(self) -> EncoderIdentity | None:
        # cached: every search asks, and only this object's writes change it
        if self._identity is None:
            self._identity = self.catalog.encoder_identity()
        return self._identity

    def _set_identity(self, identity: EncoderIdentity | None) -> None:
        if identity is None:
            self.catalog.set_setting("encoder", "")
        else:
            self.catalog.set_encoder_identity(identity)
        self._identity = identity

    def _holds_photos(self) -> bool:
        in_search, set_aside, _, _, _ = self.catalog.counts()
        return bool(in_search or set_aside or self.catalog.get_setting("reindex.pending"))

    def _forget_encoder(self) -> None:
        """Unbind the library from its encoder: its vectors are gone or were never stored."""
        self._set_identity(None)
        self.catalog.set_tile_identity(None)
        self._tile_encoder = None
        for kind in REGION_KINDS:
            self.catalog.set_setting(f"index.{kind}", "")
        self._encoder = None
        self._indexes = None

    def resolve_encoder_name(
        self, requested: str | None, options: EncoderOptions
    ) -> tuple[str, str]:
        """(encoder name, why) for this library: its own, or the requested one for a new one."""

        recorded = self.encoder_identity
        if requested and requested != AUTO:
            split_name(requested)  # unknown names fail here, before any model loads
            if recorded and recorded.name != requested and self._holds_photos():
                raise EncoderMismatchError(
                    f"library {self.directory} holds vectors of {recorded.name}; mixing encoders "
                    f"is refused. Run `searchapp reindex --encoder {requested}` to switch"
                )
            return requested, "as requested"
        if recorded:
            return recorded.name, "the library's encoder"
        choice = choose_auto(options)
        return choice.name, choice.reason

    def encoder(
        self, name: str | None = None, options: EncoderOptions | None = None
    ) -> ImageEncoder:
        """The library's encoder, loaded once and checked against the recorded identity."""

        if self._encoder is None:
            recorded_file = self.catalog.get_setting("encoder.weights_file") or None
            options = options or EncoderOptions(
                allow_download=False,
                clip_weights=Path(recorded_file) if recorded_file else None,
                quick_start=True,  # a query: start from an ONNX export where there is one
                device=self.query_device,
            )
            resolved, _ = self.resolve_encoder_name(name, options)
            return self._adopt(create_encoder(resolved, options), options)
        return self._encoder

    def _adopt(self, encoder: ImageEncoder, options: EncoderOptions) -> ImageEncoder:
        """Use a loaded encoder: recorded as the library's if it has none, else checked."""
        recorded = self.encoder_identity
        if recorded is None:
            if self.lock.held:
                self._set_identity(encoder.identity)
                weights_file = options.clip_weights
                self.catalog.set_setting(
                    "encoder.weights_file", str(weights_file.absolute()) if weights_file else ""
                )
        else:
            self._check_same(recorded, encoder, "vectors")
        self._encoder = encoder
        self._device_asked = options.device
        return encoder

    def share_encoders(self, other: LibraryEncoders) -> None:
        """Use the models another library of the same encoder has loaded: one query over
        several libraries loads each once."""
        if self._encoder is None and other._encoder is not None:
            self._check_same(self.require_identity(), other._encoder, "vectors")
            self._encoder, self._device_asked = other._encoder, other._device_asked
        if self._tile_encoder is None and other.tile_encoder_name() == self.tile_encoder_name():
            self._tile_encoder = other._tile_encoder

    def encoder_device(self) -> Device | None:
        """Where the loaded encoder runs, and why there; None before one is loaded."""
        if self._encoder is None or self._device_asked is None:
            return None
        return pick_device(self._device_asked)  # torch is imported by now: cheap

    def _check_same(self, recorded: EncoderIdentity, encoder: ImageEncoder, what: str) -> None:
        """Refuse a loaded encoder that is not the one the library's `what` came from."""
        if (recorded.name, recorded.dim) != (encoder.identity.name, encoder.identity.dim):
            raise EncoderMismatchError(
                f"library {self.directory} holds {what} of {recorded.describe()}, but the "
                f"encoder loaded is {encoder.identity.describe()}; pass the same weights, or "
                "`searchapp reindex` to switch"
            )

    def require_identity(self) -> EncoderIdentity:
        identity = self.encoder_identity
        if identity is None:
            writer = self.lock.holder()
            if writer is not None:  # a first run, before its first batch is in
                raise SearchappError(
                    f"library {self.directory} has no photos yet: {writer} is indexing its "
                    "first ones; search again in a few seconds"
                )
            raise SearchappError(
                f"library {self.directory} is empty; run `searchapp index PATH` first"
            )
        return identity

    # ---- the tiles' encoder ----------------------------------------------------------------

    def tile_encoder_name(self) -> str | None:
        """The encoder of this library's tiles where it is not the library's: recorded with
        the first tile, else chosen by the library's encoder (None: tiles in its space)."""
        recorded = self.catalog.tile_identity()
        if recorded is not None:
            return recorded.name
        identity = self.encoder_identity
        if identity is None or self.catalog.region_count("tile"):
            return None  # no encoder yet, or tiles made in its space before this existed
        return tile_encoder_name(identity.name)

    def tile_encoder(self, options: EncoderOptions | None = None) -> ImageEncoder:
        """The encoder the library's tiles are in: its own, or a CLIP library's CNN."""
        name = self.tile_encoder_name()
        if name is None:
            return self.encoder(options=options)
        if self._tile_encoder is None:
            options = options or EncoderOptions(
                allow_download=False, quick_start=True, device=self.query_device
            )
            encoder = create_encoder(name, options)
            recorded = self.catalog.tile_identity()
            if recorded is None:
                if self.lock.held:
                    self.catalog.set_tile_identity(encoder.identity)
            else:
                self._check_same(recorded, encoder, "tiles")
            self._tile_encoder = encoder
        return self._tile_encoder
