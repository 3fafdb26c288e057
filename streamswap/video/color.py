"""YUV <-> RGB on tensors (any device), for frames that never leave the GPU (NVDEC -> models ->
NVENC). Same conventions as FFmpeg's swscale as PyAV uses it: an unspecified matrix is BT.601,
levels are MPEG (16-235) unless `full_range`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Kr, Kb per matrix (the names PyAV's reformatter uses)
_KRKB = {
    None: (0.299, 0.114),
    "ITU601": (0.299, 0.114),
    "SMPTE170M": (0.299, 0.114),
    "ITU709": (0.2126, 0.0722),
    "SMPTE240M": (0.212, 0.087),
    "BT2020": (0.2627, 0.0593),
}


def _rgb_from_yuv_matrix(matrix: str | None, device: torch.device) -> torch.Tensor:
    kr, kb = _KRKB.get(matrix, _KRKB[None])
    kg = 1.0 - kr - kb
    return torch.tensor(
        [
            [1.0, 0.0, 2 * (1 - kr)],
            [1.0, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg],
            [1.0, 2 * (1 - kb), 0.0],
        ],
        dtype=torch.float32,
        device=device,
    )


def nv12_to_rgb(
    nv12: torch.Tensor, height: int, width: int, *, matrix: str | None = None, full_range: bool = False
) -> torch.Tensor:
    """NV12 -> RGB.

    nv12: (H * 3 // 2, W) uint8 (Y plane, then interleaved U/V at half resolution), any device;
        rows may be padded wider than `width` (the pitch), the extra columns are ignored.
    Returns (H, W, 3) uint8 RGB on the same device. Chroma is upsampled bilinearly.
    """
    y = nv12[:height, :width].float()
    uv = nv12[height : height + height // 2, :width].reshape(height // 2, width // 2, 2).float()
    uv = uv.permute(2, 0, 1).unsqueeze(0)  # (1, 2, H/2, W/2)
    uv = F.interpolate(uv, size=(height, width), mode="bilinear", align_corners=False)[0]
    if full_range:
        yf, u, v = y, uv[0] - 128.0, uv[1] - 128.0
    else:
        yf = (y - 16.0) * (255.0 / 219.0)
        u, v = (uv[0] - 128.0) * (255.0 / 224.0), (uv[1] - 128.0) * (255.0 / 224.0)
    yuv = torch.stack([yf, u, v], dim=-1)  # (H, W, 3)
    rgb = yuv @ _rgb_from_yuv_matrix(matrix, nv12.device).T
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


def rgb_to_nv12(rgb: torch.Tensor, *, matrix: str | None = None, full_range: bool = False) -> torch.Tensor:
    """RGB -> NV12 (the input format of NVENC).

    rgb: (H, W, 3) uint8 with even H and W, any device.
    Returns (H * 3 // 2, W) uint8 on the same device; chroma is the mean of each 2x2 block.
    """
    h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"NV12 needs even sizes, got {w}x{h}")
    m = torch.linalg.inv(_rgb_from_yuv_matrix(matrix, rgb.device))
    yuv = rgb.float() @ m.T  # (H, W, 3): Y in 0..255, U/V in -127.5..127.5
    if full_range:
        y = yuv[..., 0]
        uv = yuv[..., 1:] + 128.0
    else:
        y = yuv[..., 0] * (219.0 / 255.0) + 16.0
        uv = yuv[..., 1:] * (224.0 / 255.0) + 128.0
    uv = F.avg_pool2d(uv.permute(2, 0, 1).unsqueeze(0), 2)[0]  # (2, H/2, W/2)
    uv = uv.permute(1, 2, 0).reshape(h // 2, w)  # interleaved U, V
    out = torch.cat([y, uv], dim=0)
    return out.round_().clamp_(0, 255).to(torch.uint8)
