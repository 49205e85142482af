"""Label patches and patch pairs shared by the consistency and kernel tests."""

import numpy as np


def label_maps(kind, n, s, c, rng, dtype=np.int32):
    """Label patches of a few kinds: random, uniform, and structured/adversarial-looking."""
    if kind == "random":
        return rng.integers(0, c, (n, s, s)).astype(dtype)
    if kind == "uniform":
        return np.full((n, s, s), c - 1, dtype)
    y, x = np.mgrid[0:s, 0:s]
    if kind == "blocks":  # large constant regions, as a real segmentation
        base = rng.integers(0, c, (n, s // 16 + 1, s // 16 + 1))
        return np.repeat(np.repeat(base, 16, 1), 16, 2)[:, :s, :s].astype(dtype)
    if kind == "stripes":  # one-pixel stripes: every neighbour differs, worst case for runs
        return np.broadcast_to(((x + np.arange(n)[:, None, None]) % c), (n, s, s)).astype(dtype)
    if kind == "checker_ignore":  # checkerboard with ignore labels and labels >= C
        m = ((x // 3 + y // 5) % c)[None].repeat(n, 0).astype(np.int64)
        m[:, ::7, :] = 255
        m[:, :, ::11] = c + 1
        return m.astype(dtype)
    raise ValueError(kind)


def odd_pairs(k, s, rng):
    """Pairs with odd displacements of both signs, top-lefts placed so all are valid."""
    d = rng.integers(0, (s - 1) // 2, (k, 2)) * 2 + 1
    d *= rng.choice([-1, 1], (k, 2))
    first = np.full((k, 2), s)  # room on both sides in a 3s x 3s frame
    return np.concatenate([first, first + d], 1).astype(np.int32)
