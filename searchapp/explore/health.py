"""Embedding health: is the vector distribution still spread out the way search needs?

After the consistency checks of chapter 25.9.1: a model that collapsed, a preprocessing bug or a
wrong checkpoint shows as vectors that all point one way (a high mean cosine), as many
near-identical vectors, as a few vectors that are everyone's neighbour (hubness: the skewness of
the k-occurrence counts, Radovanovic et al., JMLR 2010), or as lengths before normalising that
vary far more than a working encoder's. Each figure has a threshold; a figure beyond it comes with
a warning that says what it suggests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from searchapp.vectors.neighbours import knn_graph

PAIR_SAMPLE = 2000  # vectors whose pairwise cosines are averaged
HUB_NEIGHBOURS = 10
NEAR_IDENTICAL = 0.99  # cosine to the nearest other vector
GRAPH_SAMPLE = 20_000  # vectors the k-occurrence is counted over

# Beyond these a figure is reported as off. Set from the shared photos' CNN and random-ViT
# libraries and a constructed collapsed set (tests/unit/test_explore.py).
MAX_MEAN_COSINE = 0.85
MAX_NEAR_IDENTICAL = 0.5
MAX_HUBNESS = 3.0
MAX_NORM_SPREAD = 0.5


@dataclass(frozen=True)
class Health:
    count: int  # vectors measured
    mean_cosine: float | None  # over sampled pairs
    near_identical: float | None  # share of vectors with another at cosine >= NEAR_IDENTICAL
    hubness: float | None  # skewness of the k-occurrence counts, k = HUB_NEIGHBOURS
    norm_spread: float | None  # coefficient of variation of the lengths before normalising
    norms_known: int  # vectors whose length was recorded (indexed since revision 0011)
    warnings: list[str] = field(default_factory=list)


def skewness(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    spread = values.std()
    if len(values) < 3 or spread == 0:
        return 0.0
    return float(np.mean((values - values.mean()) ** 3) / spread**3)


def k_occurrence(neighbours: np.ndarray, n: int) -> np.ndarray:
    """How often each row appears among the others' neighbours."""
    found = neighbours[neighbours >= 0]
    return np.bincount(found, minlength=n)


def mean_pairwise_cosine(vectors: np.ndarray, seed: int = 0) -> float:
    n = len(vectors)
    if n > PAIR_SAMPLE:
        vectors = vectors[np.random.default_rng(seed).choice(n, PAIR_SAMPLE, replace=False)]
        n = PAIR_SAMPLE
    data = np.asarray(vectors, dtype=np.float32)
    gram = data @ data.T
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))


def measure(vectors: np.ndarray, norms: np.ndarray | None = None, seed: int = 0) -> Health:
    """Health figures of unit vectors (rows), with their recorded lengths where known (NaN or
    absent where not)."""
    n = len(vectors)
    known = np.asarray([], dtype=np.float64) if norms is None else np.asarray(norms, float)
    known = known[np.isfinite(known)]
    spread = float(known.std() / known.mean()) if len(known) > 1 and known.mean() > 0 else None
    if n < 3:
        return Health(n, None, None, None, spread, len(known))
    sample = np.asarray(vectors, dtype=np.float32)
    if n > GRAPH_SAMPLE:
        pick = np.random.default_rng(seed).choice(n, GRAPH_SAMPLE, replace=False)
        sample = sample[np.sort(pick)]
    k = min(HUB_NEIGHBOURS, len(sample) - 1)
    ids, sims = knn_graph(sample, k)
    health = Health(
        count=n,
        mean_cosine=mean_pairwise_cosine(vectors, seed),
        near_identical=float(np.mean(sims[:, 0] >= NEAR_IDENTICAL)),
        hubness=skewness(k_occurrence(ids, len(sample))),
        norm_spread=spread,
        norms_known=len(known),
    )
    health.warnings.extend(warnings(health))
    return health


def warnings(health: Health) -> list[str]:
    said = []
    if health.mean_cosine is not None and health.mean_cosine > MAX_MEAN_COSINE:
        said.append(
            f"mean cosine {health.mean_cosine:.2f} > {MAX_MEAN_COSINE}: the vectors point "
            "nearly one way (a collapsed model, wrong weights or broken preprocessing?)"
        )
    if health.near_identical is not None and health.near_identical > MAX_NEAR_IDENTICAL:
        said.append(
            f"{health.near_identical:.0%} of vectors have a near-identical twin "
            f"(> {MAX_NEAR_IDENTICAL:.0%}): many copies, or an encoder that cannot tell "
            "photos apart"
        )
    if health.hubness is not None and health.hubness > MAX_HUBNESS:
        said.append(
            f"hubness {health.hubness:.1f} > {MAX_HUBNESS}: a few photos are everyone's "
            "neighbour and crowd searches (`searchapp outliers` and the map show which)"
        )
    if health.norm_spread is not None and health.norm_spread > MAX_NORM_SPREAD:
        said.append(
            f"norm spread {health.norm_spread:.2f} > {MAX_NORM_SPREAD}: the encoder's raw "
            "output lengths vary widely (broken inputs, such as blank or saturated photos?)"
        )
    return said
