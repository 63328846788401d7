"""Exact and near-duplicate dialogs: keep the first of each group (input order), report the rest.

Shared by the curate stage (corpus dialogs) and the synthesis filters (generated sessions), which meet no other way.

Near duplicates are found with MinHash over character shingles and banded LSH, then confirmed with the
exact Jaccard similarity of the shingle sets, so the LSH only proposes candidates and never decides.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

_PERMUTATIONS = 64
_BANDS = 16  # 16 bands x 4 rows: pairs at Jaccard 0.85 collide in some band with probability > 0.999
_MASK61 = np.uint64((1 << 61) - 1)


def find_duplicates(ids: list[str], texts: list[str], shingle_chars: int, near_threshold: float) -> dict[str, tuple[str, str, str]]:
    """Map each dropped dialog id -> (reason, kept id, detail); `texts` are whole dialogs in input order."""
    dropped: dict[str, tuple[str, str, str]] = {}
    first_by_digest: dict[bytes, str] = {}
    survivors: list[int] = []
    for i, text in enumerate(texts):
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in first_by_digest:
            kept = first_by_digest[digest]
            dropped[ids[i]] = ("exact_duplicate", kept, f"identical text to {kept}")
        else:
            first_by_digest[digest] = ids[i]
            survivors.append(i)
    shingles = [_shingle_hashes(texts[i], shingle_chars) for i in survivors]
    for a, b, similarity in _near_pairs(shingles, near_threshold):
        kept_i, drop_i = survivors[a], survivors[b]
        if ids[drop_i] in dropped or ids[kept_i] in dropped:
            continue  # the pair's cluster is already represented by an earlier dialog
        dropped[ids[drop_i]] = (
            "near_duplicate", ids[kept_i], f"Jaccard {similarity:.3f} >= {near_threshold} with {ids[kept_i]}"
        )
    return dropped


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def _shingle_hashes(text: str, k: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the text's k-character shingles (whitespace ignored)."""
    codes = np.frombuffer("".join(text.split()).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if codes.size < k:
        k = max(codes.size, 1)
    if codes.size == 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(codes.size - k + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):  # polynomial rolling hash modulo 2**64 by design
        for j in range(k):
            h = h * np.uint64(1_000_003) + codes[j : codes.size - k + 1 + j]
    return np.unique(h)


def _near_pairs(shingles: list[np.ndarray], threshold: float):
    """Yield (i, j, jaccard) with i < j for confirmed near-duplicate pairs, in a deterministic order."""
    rng = np.random.default_rng(0x5EED)
    a = rng.integers(1, 1 << 61, size=_PERMUTATIONS, dtype=np.uint64)
    b = rng.integers(0, 1 << 61, size=_PERMUTATIONS, dtype=np.uint64)
    rows = _PERMUTATIONS // _BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for i, hashes in enumerate(shingles):
        if hashes.size == 0:
            continue
        with np.errstate(over="ignore"):
            signature = ((hashes[None, :] * a[:, None] + b[:, None]) & _MASK61).min(axis=1)
        for band in range(_BANDS):
            buckets[(band, signature[band * rows : (band + 1) * rows].tobytes())].append(i)
    candidates = sorted({(x, y) for members in buckets.values() if len(members) > 1
                         for n, x in enumerate(members) for y in members[n + 1 :]})
    for i, j in candidates:
        similarity = jaccard(shingles[i], shingles[j])
        if similarity >= threshold:
            yield i, j, similarity
