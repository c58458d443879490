"""Near-duplicate sentences: MinHash proposes candidate pairs, exact Jaccard of character 5-grams decides.

Used by ``train.validate``: the same sentence (or a light paraphrase) in two splits would flatter every score.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict

import numpy as np

NEAR = 0.8


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def _shingles(text: str, k: int = 5) -> set[str]:
    t = normalise(text)
    return {t[i : i + k] for i in range(max(1, len(t) - k + 1))}


def near_duplicates(texts: list[str], threshold: float = NEAR, seed: int = 0) -> list[tuple[int, int, float]]:
    """Pairs with character 5-gram Jaccard >= threshold: MinHash (16 bands x 4 rows) proposes, exact Jaccard decides."""
    sets = [_shingles(t) for t in texts]
    prime, n_hash = (1 << 61) - 1, 64
    rng = np.random.default_rng(seed)
    a = rng.integers(1, prime, n_hash, dtype=np.uint64).astype(object)
    b = rng.integers(0, prime, n_hash, dtype=np.uint64).astype(object)
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for idx, shingles in enumerate(sets):
        x = np.array([zlib.crc32(s.encode()) for s in shingles], dtype=object)
        signature = [int(((ai * x + bi) % prime).min()) for ai, bi in zip(a, b)]
        for band in range(16):
            buckets[(band, *signature[band * 4 : band * 4 + 4])].append(idx)
    candidates = {(i, j) for members in buckets.values() if len(members) > 1
                  for k, i in enumerate(members) for j in members[k + 1 :]}
    pairs = []
    for i, j in sorted(candidates):
        jaccard = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        if jaccard >= threshold:
            pairs.append((i, j, round(jaccard, 3)))
    return pairs
