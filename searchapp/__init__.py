"""searchapp: local-first search for photo collections.

    from searchapp import open_library
    lib = open_library("indexes/default")

Heavy modules load on first use, so importing searchapp is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from searchapp.library import Library, open_library

__all__ = ["Library", "open_library"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from searchapp import library

        return getattr(library, name)
    raise AttributeError(name)
