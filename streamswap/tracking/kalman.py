"""Constant-velocity Kalman filtering of C coordinates that share one model and one 2x2
covariance (the state is (2, C) [position; velocity]): the model, predict, update and the
Rauch-Tung-Striebel backward pass, the textbook few lines each (filterpy computes the same - a
test checks - but importing filterpy.kalman costs every swap process 24 MB)."""

from __future__ import annotations

import numpy as np


def cv_model(
    dt: float, accel_noise: float, measurement_noise: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Constant-velocity model for one coordinate: F (2, 2), H (1, 2), Q (2, 2), R (1, 1).
    Q is the discrete white-noise-acceleration covariance for a step of dt frames."""
    f = np.array([[1.0, dt], [0.0, 1.0]])
    h = np.array([[1.0, 0.0]])
    q = accel_noise**2 * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]])
    r = np.array([[measurement_noise**2]])
    return f, h, q, r


def kf_predict(x: np.ndarray, p: np.ndarray, f: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kalman prediction of C coordinates sharing one covariance: x (2, C), p (2, 2), F, Q (2, 2).
    (filterpy's `predict`, written out: importing filterpy.kalman loads scipy.stats and friends,
    24 MB of resident memory in every swap process, for this and `rts_smooth`.)"""
    return f @ x, f @ p @ f.T + q


def rts_smooth(
    xs: np.ndarray, ps: np.ndarray, fs: list[np.ndarray], qs: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Rauch-Tung-Striebel backward pass over filtered states xs (N, 2, C) and covariances
    ps (N, 2, 2); fs[k], qs[k]: the transition from step k to k + 1. Returns the smoothed
    (xs, ps), as filterpy's `rts_smoother` computes them."""
    x, p = xs.copy(), ps.copy()
    for k in range(len(x) - 2, -1, -1):
        p_pred = fs[k] @ p[k] @ fs[k].T + qs[k]
        gain = p[k] @ fs[k].T @ np.linalg.inv(p_pred)
        x[k] += gain @ (x[k + 1] - fs[k] @ x[k])
        p[k] += gain @ (p[k + 1] - p_pred) @ gain.T
    return x, p


def kf_update(
    x: np.ndarray, p: np.ndarray, z: np.ndarray, h: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kalman update of C coordinates sharing one covariance. x (2, C), p (2, 2), z (C,)."""
    s = h @ p @ h.T + r
    gain = p @ h.T @ np.linalg.inv(s)  # (2, 1)
    x = x + gain @ (z[None, :] - h @ x)
    i_kh = np.eye(2) - gain @ h
    return x, i_kh @ p @ i_kh.T + gain @ r @ gain.T  # Joseph form: stays symmetric positive
