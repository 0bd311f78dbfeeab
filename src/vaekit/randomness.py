"""Seeds derived from (seed, purpose, index): randomness as a pure function of position in a run."""

from __future__ import annotations

import numpy as np
import torch

_PURPOSES = {
    "init": 0,
    "order": 1,
    "noise": 2,
    "eval": 3,
    "importance": 4,
    "pictures": 5,
    "permutation": 6,
    "dequantize": 7,
    "corruption": 8,
    "codebook": 9,
    "labelled": 10,  # which training images keep their labels (data.labelled)
    "labels": 11,  # M2's z at every label
}


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """A well-mixed 63-bit seed for one purpose and index (NumPy's SeedSequence hashing), so that
    streams for different purposes or steps never overlap however the seeds are chosen."""
    state = np.random.SeedSequence([seed, _PURPOSES[purpose], index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seeded_generator(seed: int, purpose: str, index: int = 0) -> torch.Generator:
    """A CPU torch.Generator for one purpose and index of a run with this seed."""
    return torch.Generator().manual_seed(derive_seed(seed, purpose, index))
