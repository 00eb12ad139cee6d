"""Image IDs and rkt's store keys: the one grammar root takes an image by (issue #10).

Kept apart from the store's model so that what names an image (the root program's request,
the CLI) does not load the ACI reader and the OpenPGP verifier just to check a key.
"""

from __future__ import annotations

import re

from trustd.shared._dataclass import frozen
from trustd.shared.errors import UserError

ID_PREFIX = "sha512-"
KEY_HEX = 64  # rkt's store key: sha512- and the first 64 hex digits (256 bits)
_STORE_KEY = re.compile(r"sha512-[0-9a-f]{128}", re.ASCII)


def is_id_ref(ref: str) -> bool:
    """Whether a reference to a stored image is an ID (prefix), not a name[:version]: the
    store resolves it by ID, and the order of a name's images plays no part."""
    return ref.startswith(ID_PREFIX)


def store_key(image_id: str) -> str:
    """``sha512-<128 hex>`` (or an already short key) -> rkt's ``sha512-<64 hex>`` key."""
    return image_id[: len(ID_PREFIX) + KEY_HEX]


@frozen
class StoreKey:
    """The one form in which root takes an image: its full ID, ``sha512-`` and 128 lower-case
    hex digits (the sha512 of the uncompressed tar). Made only by :meth:`parse`, which checks
    the exact grammar, so every path root builds from a key is built from checked text.
    """

    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or _STORE_KEY.fullmatch(self.id) is None:
            raise ValueError(f"not a full image ID (sha512- and 128 hex digits): {self.id!r:.80}")

    @classmethod
    def parse(cls, text: str) -> StoreKey:
        """``text`` as a key, or a UserError naming what is wrong with it."""
        try:
            return cls(text)
        except ValueError as exc:
            raise UserError(
                f"{exc}", hint="give the full image ID as rkt image list --full shows it"
            ) from exc

    @property
    def digest(self) -> str:
        """The 128 hex digits."""
        return self.id.removeprefix(ID_PREFIX)

    @property
    def blob_name(self) -> str:
        """rkt's store key (``sha512-`` and the first 64 hex): the blob directory's name."""
        return store_key(self.id)

    @property
    def blob_relpath(self) -> str:
        """The blob directory, relative to ``cas``: ``blob/sha512/<2 hex>/<blob name>``."""
        return f"blob/sha512/{self.digest[:2]}/{self.blob_name}"
