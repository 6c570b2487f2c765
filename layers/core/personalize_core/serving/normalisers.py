"""Users' softmax log-normalisers, log Σ_j exp(u·j) over the whole catalog, exactly.

Exact as the publisher's were: the logits in float64 (a float32 product would put ~1e-9 of
relative error in the tail's mass, and that error into every score). The item matrix is read a few
of its blocks at a time as float32 tiles (both planes joined: item_matrix.py; compiled when the
kernels are built), each widened into a small float64 buffer, so computing a normaliser never
holds a float64 copy of the catalog (512 MB at 1M x 64).

A user's normaliser is computed on first use (``modelstore.users``: cached with the vector), a
batch's in one blocked product; docs/DESIGN.md has the measured costs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from personalize_core.modelstore.item_matrix import BLOCK_ITEMS, ItemMatrix
from personalize_core.serving import native
from personalize_core.serving.scoring import Items, as_item_matrix

#: Item-matrix blocks per tile: [d, 4,096 items] (1 MB as float32 at d = 64; 2-8 blocks measured
#: alike, one block a step costs more calls).
_BLOCKS_PER_STEP = 4
#: Users per product: [users, tile] float64 logits (8 MB) stay small.
_USER_BLOCK = 256


def log_normalisers(item_factors: Items, vectors: np.ndarray) -> np.ndarray:
    """log Σ_j exp(v·j) for every row v of ``vectors`` ([users, d]), in float64.

    ``item_factors``: the model's item matrix (a float32 [items, d] array is encoded first: tools).
    One user: every logit in one float64 row (8 bytes an item), then one log-sum-exp. More: a
    running log-sum-exp per user (peak and mass, rescaled when the peak rises), tile by tile.
    """
    items = as_item_matrix(item_factors)
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if vectors.shape[0] == 1:
        logits = np.empty(items.num_items, dtype=np.float64)
        for first, tile in _tiles(items):
            np.matmul(vectors[0], tile, out=logits[first : first + tile.shape[1]])
        peak = float(logits.max())
        logits -= peak
        np.exp(logits, out=logits)
        return np.array([peak + float(np.log(logits.sum()))])
    out = np.empty(vectors.shape[0], dtype=np.float64)
    for first_user in range(0, vectors.shape[0], _USER_BLOCK):
        users = vectors[first_user : first_user + _USER_BLOCK]
        peaks = np.full(users.shape[0], -np.inf)
        mass = np.zeros(users.shape[0])
        for _, tile in _tiles(items):
            block = users @ tile  # [users, width], float64
            new_peaks = np.maximum(peaks, block.max(axis=1))
            mass *= np.exp(peaks - new_peaks)
            block -= new_peaks[:, None]
            np.exp(block, out=block)
            mass += block.sum(axis=1)
            peaks = new_peaks
        out[first_user : first_user + users.shape[0]] = peaks + np.log(mass)
    return out


def log_normaliser(item_factors: Items, vector: np.ndarray) -> float:
    """log Σ_j exp(v·j) over the catalog for one vector, in float64."""
    return float(log_normalisers(item_factors, np.asarray(vector)[None, :])[0])


def _tiles(items: ItemMatrix) -> Iterator[tuple[int, np.ndarray]]:
    """(first item, float64 [d, its items]) for consecutive tiles of the catalog: the exact float32
    values (both planes) widened; the buffers are reused, so a tile is valid until the next."""
    width = min(items.num_items, _BLOCKS_PER_STEP * BLOCK_ITEMS)
    tile32 = np.empty((items.dims, width), dtype=np.float32)
    tile64 = np.empty((items.dims, width), dtype=np.float64)
    kernels = native.kernels()
    blocks = -(-items.num_items // BLOCK_ITEMS)
    for first_block in range(0, blocks, _BLOCKS_PER_STEP):
        if kernels is not None:
            joined = kernels.columns(items, first_block, _BLOCKS_PER_STEP, tile32)
        else:
            joined = _join(items, first_block, tile32)
        widened = tile64[:, : joined.shape[1]]
        np.copyto(widened, joined)  # float32 widens to float64 exactly
        yield first_block * BLOCK_ITEMS, widened


def _join(items: ItemMatrix, first_block: int, out: np.ndarray) -> np.ndarray:
    """numpy's join of a tile's planes into ``out`` (float32 [d, >= its items]); a view of it."""
    bits = out.view(np.uint32)
    filled = 0
    for number in range(first_block, min(-(-items.num_items // BLOCK_ITEMS), first_block + _BLOCKS_PER_STEP)):
        _, count, high, low = items.block(number)  # views of the planes: [d, count] each
        into = bits[:, filled : filled + count]
        np.left_shift(high, 16, out=into, dtype=np.uint32)
        np.bitwise_or(into, low, out=into)
        filled += count
    return out[:, :filled]
