"""The per-frame measures of a swap against its original, on landmarks, descriptors and grey frames.

Landmarks are dlib's iBUG 68 points, (68, 2) float in frame pixels; grey frames (H, W) uint8.
Plain numpy, except head pose (cv2.solvePnP) and the flow warp (cv2.remap).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MOUTH = slice(48, 68)
EYES = slice(36, 48)
BROWS = slice(17, 27)

#: The 3-D mean face solvePnP fits (millimetre-like units; x right, y down, z away from the camera)
#: for the landmarks POSE_POINTS: nose tip, chin, outer eye corners, mouth corners.
POSE_POINTS = (30, 8, 36, 45, 48, 54)
MEAN_FACE_3D = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.0, 330.0, 65.0],
        [-225.0, -170.0, 135.0],
        [225.0, -170.0, 135.0],
        [-150.0, 150.0, 125.0],
        [150.0, 150.0, 125.0],
    ],
    dtype=np.float64,
)
#: Eye-landmark error is expressed at this face size (pixels), as for GHOST's aligned crops.
EYE_CROP = 256


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two descriptors (D,) in [-1, 1]."""
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def inter_ocular(points: np.ndarray) -> float:
    """Distance (pixels) between the eye centres (36-41, 42-47) of 68 points (68, 2)."""
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def head_pose(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of a face's 68 points (68, 2), for a frame of `size` (w, h):
    solvePnP of POSE_POINTS against MEAN_FACE_3D with a pinhole camera of focal length w."""
    import cv2

    w, h = size
    camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], dtype=np.float64)
    image = points[list(POSE_POINTS)].astype(np.float64)
    ok, rvec, _ = cv2.solvePnP(MEAN_FACE_3D, image, camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return np.full(3, np.nan)
    r, _ = cv2.Rodrigues(rvec)
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return np.array([yaw, pitch, roll])


def angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| of angles in degrees, wrapped to [0, 180]."""
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def procrustes(points: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """`points` (P, 2) moved by the similarity (scale, rotation, translation) that best fits them
    onto `onto` (P, 2) in the least-squares sense (Umeyama, no reflection)."""
    mp, mo = points.mean(0), onto.mean(0)
    p, o = points - mp, onto - mo
    u, s, vt = np.linalg.svd(o.T @ p)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    fix = np.diag([1.0, d])
    rot = u @ fix @ vt
    scale = float((s * np.diag(fix)).sum() / max(float((p**2).sum()), 1e-12))
    return (scale * (rot @ p.T)).T + mo


def expression_errors(swapped: np.ndarray, original: np.ndarray) -> tuple[float, float, float]:
    """(mouth, eyes, brows): after a Procrustes fit of the swapped 68 points onto the original's,
    the mean distance of each group's points, divided by the original's inter-ocular distance
    (0: the same expression; ~0.05 is a visible change)."""
    aligned = procrustes(swapped.astype(np.float64), original.astype(np.float64))
    iod = max(inter_ocular(original), 1e-6)
    dist = np.linalg.norm(aligned - original, axis=1) / iod
    return float(dist[MOUTH].mean()), float(dist[EYES].mean()), float(dist[BROWS].mean())


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip gap (mean of 61-67, 62-66, 63-65) over the inter-ocular distance (0: closed)."""
    gap = np.linalg.norm(points[[61, 62, 63]] - points[[67, 66, 65]], axis=1).mean()
    return float(gap / max(inter_ocular(points), 1e-6))


def eye_error(swapped: np.ndarray, original: np.ndarray, face_size: float) -> float:
    """Mean distance of the eye points (36-47), swapped vs original, in pixels of a face scaled
    to EYE_CROP pixels (face_size: the original's face box side in frame pixels)."""
    dist = np.linalg.norm(swapped[EYES] - original[EYES], axis=1).mean()
    return float(dist * EYE_CROP / max(face_size, 1e-6))


def correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation of two equally long series; 0 when exactly one of them is constant
    (no co-variation), NaN when both are or fewer than 3 values."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(x) < 3:
        return float("nan")
    sx, sy = x.std(), y.std()
    if sx < 1e-9 and sy < 1e-9:
        return float("nan")
    if sx < 1e-9 or sy < 1e-9:
        return 0.0
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


def warp_error(previous: np.ndarray, current: np.ndarray, flow: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean absolute grey difference in `box` (x0, y0, x1, y1, in the arrays' pixels) between
    `current` (H, W) uint8 and `previous` warped onto it by `flow` (H, W, 2) float32: for each
    current pixel, where it was in the previous frame (the backward flow)."""
    import cv2

    h, w = current.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(
        previous, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    x0, y0, x1, y1 = box
    diff = np.abs(warped[y0:y1, x0:x1].astype(np.float32) - current[y0:y1, x0:x1].astype(np.float32))
    return float(diff.mean()) if diff.size else float("nan")


def acceleration(points: Sequence[np.ndarray | None], breaks: Sequence[bool]) -> np.ndarray:
    """Per-frame landmark acceleration: mean over the 68 points of |p[t+1] - 2 p[t] + p[t-1]|
    (pixels), NaN where a point set is missing or a cut lies in the triple (breaks[t]: frame t
    starts a new shot). points: one (68, 2) array or None per frame."""
    out = np.full(len(points), np.nan)
    for t in range(1, len(points) - 1):
        a, b, c = points[t - 1], points[t], points[t + 1]
        if a is None or b is None or c is None or breaks[t] or breaks[t + 1]:
            continue
        out[t] = float(np.linalg.norm(c - 2 * b + a, axis=1).mean())
    return out


def face_region(points: np.ndarray, shape: tuple[int, int], grow: float = 0.15) -> np.ndarray:
    """(H, W) bool: the convex hull of the 68 points, dilated by `grow` times the face size."""
    import cv2

    size = float(max(np.ptp(points[:, 0]), np.ptp(points[:, 1])))
    k = max(3, int(round(2 * grow * size)) | 1)
    h, w = shape
    # drawn and dilated in the face's bounding box plus the dilation only (the frame is much larger)
    x0, y0 = max(0, int(points[:, 0].min()) - k), max(0, int(points[:, 1].min()) - k)
    x1, y1 = min(w, int(points[:, 0].max()) + k + 1), min(h, int(points[:, 1].max()) + k + 1)
    mask = np.zeros(shape, bool)
    if x1 <= x0 or y1 <= y0:
        return mask
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    hull = cv2.convexHull((np.round(points) - [x0, y0]).astype(np.int32))
    cv2.fillConvexPoly(local, hull, 1)
    grown = cv2.dilate(local, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask[y0:y1, x0:x1] = grown.astype(bool)
    return mask


def background_error(output: np.ndarray, original: np.ndarray, face: np.ndarray) -> float:
    """Mean absolute grey difference (0-255) of two (H, W) uint8 frames outside `face` (H, W) bool."""
    keep = ~face
    if not keep.any():
        return float("nan")
    return float(np.abs(output[keep].astype(np.int16) - original[keep].astype(np.int16)).mean())


def nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the finite values (NaN if none)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")
