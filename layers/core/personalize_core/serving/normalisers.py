"""Users' softmax log-normalisers, log Σ_j exp(u·j) over the whole catalog, exactly.

Exact as the publisher's were: the logits in float64 (a float32 product would put ~1e-9 of
relative error in the tail's mass, and that error into every score). The item matrix stays
float32: it is widened a block of items at a time into a small buffer, so computing a normaliser
never holds a float64 copy of the catalog (512 MB at 1M x 64).

A user's normaliser is computed on first use (``modelstore.users``: cached with the vector) and a
batch shard's in one blocked product; docs/DESIGN.md has the measured costs.
"""

from __future__ import annotations

import numpy as np

#: Items widened to float64 per step: [d, block] stays in cache (2 MB at d = 64), and was the
#: fastest block measured for one user at 100k x 64 (2k-32k tried).
_ITEM_BLOCK = 4096
#: Users per product: [users, block] float64 logits (8 MB) stay small.
_USER_BLOCK = 256


def log_normalisers(item_factors: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """log Σ_j exp(v·j) for every row v of ``vectors`` ([users, d]), in float64.

    ``item_factors`` is the model's [items, d] matrix (dimension-major or not). A running
    log-sum-exp per user (peak and mass, rescaled when the peak rises) folds the blocks in.
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    num_items, dims = item_factors.shape
    by_dimension = item_factors.T  # [d, items]: C-contiguous in the model's layout
    out = np.empty(vectors.shape[0], dtype=np.float64)
    widened = np.empty((dims, min(_ITEM_BLOCK, max(num_items, 1))), dtype=np.float64)
    for first_user in range(0, vectors.shape[0], _USER_BLOCK):
        users = vectors[first_user : first_user + _USER_BLOCK]
        peaks = np.full(users.shape[0], -np.inf)
        mass = np.zeros(users.shape[0])
        for first in range(0, num_items, widened.shape[1]):
            width = min(widened.shape[1], num_items - first)
            block = widened[:, :width]
            np.copyto(block, by_dimension[:, first : first + width])
            logits = users @ block  # [users, width], float64
            new_peaks = np.maximum(peaks, logits.max(axis=1))
            mass *= np.exp(peaks - new_peaks)
            logits -= new_peaks[:, None]
            np.exp(logits, out=logits)
            mass += logits.sum(axis=1)
            peaks = new_peaks
        out[first_user : first_user + users.shape[0]] = peaks + np.log(mass)
    return out


def log_normaliser(item_factors: np.ndarray, vector: np.ndarray) -> float:
    """log Σ_j exp(v·j) over the catalog for one vector, in float64."""
    return float(log_normalisers(item_factors, np.asarray(vector)[None, :])[0])
