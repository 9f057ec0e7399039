"""Building weighted query terms from API arguments or command-line flags."""

from __future__ import annotations

import os
from pathlib import Path

from searchapp.errors import QueryError
from searchapp.query.search import Term

Many = str | Path | list[str | Path] | list[str] | None


def _listed(value: Many) -> list[str | Path]:
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [value]
    return list(value)


def minus_term(value: str | Path) -> Term:
    """A subtracted term: an existing file (or a Path) is an image, anything else is text."""
    if isinstance(value, Path) or os.path.isfile(os.path.expanduser(str(value))):
        return Term("image", str(value), -1.0)
    return Term("text", str(value), -1.0)


def apply_weights(terms: list[Term], weights: list[float] | None) -> tuple[Term, ...]:
    if weights is None:
        return tuple(terms)
    if len(weights) != len(terms):
        raise QueryError(
            f"--weights has {len(weights)} numbers for {len(terms)} terms; give one per term, "
            "in the order the terms appear"
        )
    weighted = []
    for term, weight in zip(terms, weights, strict=True):
        if weight <= 0:
            raise QueryError(f"weights must be positive (got {weight}); subtract with --minus")
        weighted.append(Term(term.source, term.value, weight if term.weight > 0 else -weight))
    return tuple(weighted)


def terms_from(
    *,
    text: Many = None,
    image: Many = None,
    like: Many = None,
    minus: Many = None,
    weights: list[float] | None = None,
) -> tuple[Term, ...]:
    terms = [Term("text", str(t)) for t in _listed(text)]
    terms += [Term("image", str(p)) for p in _listed(image)]
    terms += [Term("like", str(p)) for p in _listed(like)]
    terms += [minus_term(m) for m in _listed(minus)]
    return apply_weights(terms, weights)


def parse_weights(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise QueryError(f"--weights {text!r}: give comma-separated numbers, e.g. 1,0.5") from None
