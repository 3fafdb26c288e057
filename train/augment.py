"""GHOST's colour jitter, with its random factors drawn by the pair sampler (not inside the loader).

GHOST applies torchvision's `ColorJitter(0.2, 0.2, 0.2, 0.01)` to every image it loads
(source and target independently; no flip). Here the four factors of each image are part of the
sampler's plan, so the torch and DALI loaders apply the same jitter to the same image and a
restarted run sees the same augmented batches. The operations follow torchvision's definitions
on float pixels in [0, 255], clamped after each step, in a fixed order (torchvision shuffles the
order per image; fixed order keeps the two loaders identical):

1. brightness b: x * b
2. contrast c: c * x + (1 - c) * mean(gray(x))  (one mean per image)
3. saturation s: s * x + (1 - s) * gray(x)       (a 3x3 colour matrix)
4. hue h (fraction of a turn): rotation of the chroma plane in YIQ space by 2*pi*h (a 3x3
   colour matrix; torchvision shifts HSV hue instead, which differs by well under one grey
   level for |h| <= 0.01, GHOST's range)

gray(x) = 0.2989 R + 0.587 G + 0.114 B (torchvision's weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRAY = (0.2989, 0.587, 0.114)
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


@dataclass(frozen=True)
class JitterRanges:
    """torchvision ColorJitter arguments: factors drawn from [1 - v, 1 + v] (hue from [-v, v])."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.01

    def factors(self, u: np.ndarray) -> np.ndarray:
        """Uniform draws u (..., 4) in [0, 1) -> factors (..., 4) float32: b, c, s, h."""
        lo = np.array([1 - self.brightness, 1 - self.contrast, 1 - self.saturation, -self.hue])
        hi = np.array([1 + self.brightness, 1 + self.contrast, 1 + self.saturation, self.hue])
        return (lo + u * (hi - lo)).astype(np.float32)


IDENTITY_FACTORS = np.array([1.0, 1.0, 1.0, 0.0], dtype=np.float32)


def saturation_matrix(s: float) -> np.ndarray:
    """(3, 3) float32 M with M @ rgb = s * rgb + (1 - s) * gray(rgb)."""
    gray = np.array(GRAY)
    return (s * np.eye(3) + (1 - s) * np.outer(np.ones(3), gray)).astype(np.float32)


def hue_matrix(h: float) -> np.ndarray:
    """(3, 3) float32 M rotating the YIQ chroma plane by 2*pi*h (h in turns)."""
    a = 2 * math.pi * h
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    return (_YIQ_TO_RGB @ rot @ _RGB_TO_YIQ).astype(np.float32)


def _mix(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Colour matrix (k, 3) applied to x (3, H, W) float32 -> (k, H, W) float32, elementwise."""
    return np.stack([np.float32(r[0]) * x[0] + np.float32(r[1]) * x[1] + np.float32(r[2]) * x[2] for r in m])


def jitter(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Colour jitter of one image. x: (3, H, W) float32 RGB in [0, 255]; factors: (4,) b, c, s, h.
    Returns (3, H, W) float32 in [0, 255]. numpy on purpose: single-threaded elementwise work
    with a fixed summation order, so it costs ~2 ms per 224 crop even on a busy machine (torch's
    thread pool stalls on tiny ops there) and worker processes match the main process bitwise."""
    b, c, s, h = (np.float32(v) for v in factors)
    x = np.clip(x * b, 0, 255)
    mean = np.float32(np.mean(_mix(np.array([GRAY]), x)[0], dtype=np.float64))
    x = np.clip(c * x + (1 - c) * mean, 0, 255)
    for m in (saturation_matrix(float(s)), hue_matrix(float(h))):
        x = np.clip(_mix(m, x), 0, 255)
    return x.astype(np.float32, copy=False)
