"""Triton's classification extension: an output asked for with `classification: K` comes back
as BYTES "score:index" strings of the K highest scores of each batch row."""

from __future__ import annotations

import numpy as np

from modelyard.errors import InvalidArgument


def top_k(name: str, scores: np.ndarray, k: int, batched: bool) -> np.ndarray:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidArgument(f"output {name!r}: classification must be a positive integer")
    if scores.dtype.kind not in "iuf":
        raise InvalidArgument(f"output {name!r} is not numeric and cannot be classified")
    rows = (
        scores.reshape(scores.shape[0], -1)
        if batched and scores.ndim > 0
        else scores.reshape(1, -1)
    )
    k = min(k, rows.shape[1])
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for r, row in enumerate(order):
        out[r] = [f"{float(rows[r, i]):f}:{int(i)}".encode() for i in row]
    return out if batched else out.reshape(k)
