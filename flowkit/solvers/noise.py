r"""Random numbers that depend on (base seed, sample index, stream, position) alone.

Every random number flowkit draws for a sample -- its initial noise, the Brownian
increments of a stochastic sampler, the class label of a reflow pair -- is a pure
function of ``(seed, index, stream, position)``. Results therefore never depend on the
batch size, on how work is split across processes, on restarts, or on the device (the
per-seed generators of EDM, made counter-based and vectorised).

Construction (a counter-based generator, as Philox is for JAX and cuRAND):

- Key. ``key = mix(mix(mix(seed) ^ stream) ^ index)``, all in 64-bit unsigned arithmetic,
  where ``mix`` is the SplitMix64 finaliser (a bijection of 64-bit words). The whole
  64-bit seed is used (``seed`` modulo ``2**64``), and for a fixed (seed, stream) distinct
  indices give distinct keys.
- Words. Position ``j`` of a sample's stream is the 64-bit word
  ``mix(key + (j + 1) * 0x9E3779B97F4A7C15)``: the SplitMix64 sequence started at
  ``key`` (which passes BigCrush), computed for any ``j`` directly, so a whole
  ``(B, n)`` block is one vectorised expression.
- Normals. Consecutive words ``(w_{2k}, w_{2k+1})`` give two uniforms with 53-bit
  resolution, ``u1`` in ``(0, 1]`` and ``u2`` in ``[0, 1)``, and the Box-Muller pair
  ``sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2)``. They are computed in float64 and cast,
  so float32 noise is float64 noise rounded.

Streams: :data:`NOISE_STREAM` (initial noise), :data:`INCREMENT_STREAM` (SDE increments,
step ``s`` of a sample of ``n`` numbers reads positions ``[s n', (s + 1) n')`` where
``n'`` is ``n`` rounded up to even), :data:`LABEL_STREAM` (class labels),
:data:`MCMC_STREAM` and :data:`MCMC_GIBBS_STREAM` (denoising MCMC chains, keyed by chain).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

NOISE_STREAM = 0
INCREMENT_STREAM = 1
LABEL_STREAM = 2
MCMC_STREAM = 3
"""Denoising MCMC: the Langevin noise of chain ``i`` (index = chain)."""
MCMC_GIBBS_STREAM = 4
"""Denoising MCMC: the uniforms of chain ``i``'s posterior Gibbs draws of the noise level."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31))
_MASK64 = 2**64 - 1


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of uint64 words, in place (wrapping arithmetic); returns ``z``."""
    shifted = z >> _SHIFTS[0]
    z ^= shifted
    z *= _MUL1
    np.right_shift(z, _SHIFTS[1], out=shifted)
    z ^= shifted
    z *= _MUL2
    np.right_shift(z, _SHIFTS[2], out=shifted)
    z ^= shifted
    return z


def _as_seed(seed: int) -> int:
    try:
        return operator.index(seed) & _MASK64
    except TypeError:
        raise ValueError(f"seed must be an integer, got {seed!r}") from None


def sample_keys(seed: int, indices: Iterable[int], stream: int = NOISE_STREAM) -> np.ndarray:
    """The 64-bit keys ``(B,)`` of samples ``indices`` under ``seed`` in ``stream``."""
    index = np.fromiter((int(i) for i in indices), dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        base = _mix(np.array([_as_seed(seed)], dtype=np.uint64))
        base = _mix(base ^ np.uint64(stream))
        return _mix(base ^ index)


def sample_seed(seed: int, index: int, stream: int = NOISE_STREAM) -> int:
    """The 64-bit key of sample ``index`` under base seed ``seed`` (see the module doc)."""
    return int(sample_keys(seed, [index], stream)[0])


def random_words(keys: np.ndarray, start: int, count: int) -> np.ndarray:
    """Words ``[start, start + count)`` of each key's stream: uint64 ``(B, count)``."""
    positions = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix(keys[:, None] + positions[None, :] * _GOLDEN)


_CHUNK = 1 << 16
"""Numbers made per vectorised pass: small enough that the temporaries stay in cache."""


def standard_normal(
    keys: np.ndarray, start: int, count: int, dtype: type | np.dtype = np.float64
) -> np.ndarray:
    """Normals at positions ``[start, start + count)`` of each stream: ``(B, count)``.

    ``start`` and ``count`` must be even (each Box-Muller pair reads two words). They are
    computed in float64 and, for another floating ``dtype`` (float32), rounded to it once:
    the values of the float64 result cast.
    """
    if start % 2 or count % 2:
        raise ValueError(f"start and count must be even, got start={start}, count={count}")
    out = np.empty((len(keys), count), dtype=dtype)
    if not len(keys) or not count:
        return out
    pairs = count // 2
    rows = max(1, _CHUNK // count)
    # The words' offsets (j + 1) * golden, once per call; radius (even j) and angle (odd j)
    # words are made apart, so every elementwise pass below reads and writes contiguous
    # memory (numpy's strided loops are slower, the values are the same).
    with np.errstate(over="ignore"):
        offsets = np.arange(start + 1, start + count + 1, dtype=np.uint64) * _GOLDEN
    even, odd = offsets[0::2].copy(), offsets[1::2].copy()
    n = min(rows, len(keys))
    words = np.empty((n, pairs), dtype=np.uint64)
    shifted = np.empty((n, pairs), dtype=np.uint64)
    radius = np.empty((n, pairs), dtype=np.float64)
    angle = np.empty((n, pairs), dtype=np.float64)
    trig = np.empty((n, pairs), dtype=np.float64)
    for first in range(0, len(keys), rows):
        block_keys = keys[first : first + rows, None]
        m = len(block_keys)
        w, s, r, a, c = words[:m], shifted[:m], radius[:m], angle[:m], trig[:m]
        block = out[first : first + m]
        for offset, dst in ((even, r), (odd, a)):
            with np.errstate(over="ignore"):
                np.add(block_keys, offset, out=w)
                _mix_into(w, s)
            np.right_shift(w, np.uint64(11), out=w)  # 53 random bits
            dst[...] = w
        r += 1.0  # u1 in (0, 1]: log is finite
        r *= 2.0**-53
        np.log(r, out=r)
        r *= -2.0
        np.sqrt(r, out=r)
        a *= 2.0 * np.pi * 2.0**-53
        np.cos(a, out=c)
        np.multiply(c, r, out=block[:, 0::2])
        np.sin(a, out=c)
        np.multiply(c, r, out=block[:, 1::2])
    return out


def _mix_into(z: np.ndarray, shifted: np.ndarray) -> None:
    """:func:`_mix` of ``z`` in place, with ``shifted`` (same shape) as its scratch."""
    np.right_shift(z, _SHIFTS[0], out=shifted)
    z ^= shifted
    z *= _MUL1
    np.right_shift(z, _SHIFTS[1], out=shifted)
    z ^= shifted
    z *= _MUL2
    np.right_shift(z, _SHIFTS[2], out=shifted)
    z ^= shifted


def numel(shape: tuple[int, ...]) -> int:
    """Numbers per sample of the per-sample ``shape``."""
    count = 1
    for size in shape:
        count *= int(size)
    return count


def even_numel(shape: tuple[int, ...]) -> int:
    """Numbers per sample rounded up to even: the stride of one draw in a stream."""
    count = numel(shape)
    return count + count % 2


def seeded_noise(
    shape: tuple[int, ...],
    indices: Iterable[int],
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``(len(indices), *shape)`` standard normal noise, row ``k`` from ``(seed, indices[k])``.

    Drawn on the CPU; move it where it is needed. Equal ``(seed, index)`` give equal rows
    whatever else is in the batch; different seeds give independent noise.
    """
    shape = tuple(int(s) for s in shape)
    keys = sample_keys(seed, indices, NOISE_STREAM)
    normals = standard_normal(keys, 0, even_numel(shape))[:, : numel(shape)]
    return torch.from_numpy(np.ascontiguousarray(normals)).reshape(len(keys), *shape).to(dtype)


def seeded_integers(high: int, indices: Iterable[int], seed: int = 0) -> Tensor:
    """``(len(indices),)`` int64 uniform on ``{0, ..., high - 1}``, row ``k`` from
    ``(seed, indices[k])`` in the label stream (independent of the noise)."""
    if high < 1:
        raise ValueError(f"high must be >= 1, got {high}")
    keys = sample_keys(seed, indices, LABEL_STREAM)
    uniform = (random_words(keys, 0, 1)[:, 0] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return torch.from_numpy(np.minimum(np.floor(uniform * high), high - 1).astype(np.int64))
