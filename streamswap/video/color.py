"""YUV <-> RGB on tensors (any device), for frames that never leave the GPU (NVDEC -> models ->
NVENC): 8-bit NV12, 10/12-bit P016 and 4:4:4 surfaces in, NV12 out. Same conventions as FFmpeg's
swscale as PyAV uses it: an unspecified matrix is BT.601, levels are MPEG (16-235) unless
`full_range`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamswap.video.nvdec_support import Surface

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


def surface_to_rgb(
    surface: torch.Tensor,
    layout: Surface,
    height: int,
    width: int,
    *,
    bit_depth: int = 8,
    matrix: str | None = None,
    full_range: bool = False,
) -> torch.Tensor:
    """A decoder surface (what NVDEC hands over) -> RGB.

    surface, by layout (rows may be padded wider than `width`, the pitch; extra columns ignored):
      "nv12": (H * 3 // 2, W) uint8, the Y plane then interleaved U/V at half resolution;
      "p016": the same in uint16, each sample's `bit_depth` bits in the high bits (10/12-bit 4:2:0);
      "yuv444": (3 * H, W) uint8 planes Y, U, V; "yuv444_16bit": the same in uint16, high bits.
    Any device. Returns (H, W, 3) uint8 RGB on the same device; 4:2:0 chroma is upsampled bilinearly.
    """
    x = surface.float()  # uint16 has few kernels in torch: do the maths in float32 (exact below 2**24)
    wide = layout in ("p016", "yuv444_16bit")
    bits = bit_depth if wide else 8
    if wide:  # the sample's code at its own depth: drop the low padding bits
        x = torch.floor(x / float(1 << (16 - bits)))
    if layout in ("nv12", "p016"):
        y = x[:height, :width]
        uv = x[height : height + height // 2, :width].reshape(height // 2, width // 2, 2)
        uv = F.interpolate(
            uv.permute(2, 0, 1).unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False
        )[0]
        u, v = uv[0], uv[1]
    elif layout in ("yuv444", "yuv444_16bit"):
        y, u, v = x[:height, :width], x[height : 2 * height, :width], x[2 * height : 3 * height, :width]
    else:
        raise ValueError(f"unknown surface layout {layout!r}")
    top = float((1 << bits) - 1)
    if full_range:  # codes 0..2^bits-1, chroma centred on 2^(bits-1)
        scale, mid = 255.0 / top, float(1 << (bits - 1))
        yf, uf, vf = y * scale, (u - mid) * scale, (v - mid) * scale
    else:  # MPEG levels: 16-235 / 16-240 at 8 bits, shifted left at higher depths
        per = float(1 << (bits - 8))
        yf = (y / per - 16.0) * (255.0 / 219.0)
        uf, vf = (u / per - 128.0) * (255.0 / 224.0), (v / per - 128.0) * (255.0 / 224.0)
    yuv = torch.stack([yf, uf, vf], dim=-1)  # (H, W, 3)
    rgb = yuv @ _rgb_from_yuv_matrix(matrix, surface.device).T
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


def _yuv420_planes(rgb: torch.Tensor, matrix: str | None, full_range: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(Y (H, W), UV (2, H/2, W/2)) float at 8-bit levels; chroma is the mean of each 2x2 block."""
    h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even sizes, got {w}x{h}")
    m = torch.linalg.inv(_rgb_from_yuv_matrix(matrix, rgb.device))
    yuv = rgb.float() @ m.T  # (H, W, 3): Y in 0..255, U/V in -127.5..127.5
    if full_range:
        y = yuv[..., 0]
        uv = yuv[..., 1:] + 128.0
    else:
        y = yuv[..., 0] * (219.0 / 255.0) + 16.0
        uv = yuv[..., 1:] * (224.0 / 255.0) + 128.0
    return y, F.avg_pool2d(uv.permute(2, 0, 1).unsqueeze(0), 2)[0]


def _levels(t: torch.Tensor) -> torch.Tensor:
    return t.round_().clamp_(0, 255).to(torch.uint8)


def rgb_to_yuv420(rgb: torch.Tensor, *, matrix: str | None = None, full_range: bool = False) -> torch.Tensor:
    """RGB -> planar YUV 4:2:0, what x264 takes (FFmpeg's yuv420p).

    rgb: (H, W, 3) uint8 with even H and W, any device. Returns (H * 3 // 2, W) uint8 on the same
    device, laid out as PyAV's yuv420p arrays: the Y plane, then U's and V's (H/2, W/2) samples
    flat, row after row. Chroma is the mean of each 2x2 block. Within 1 level of swscale on real
    frames (Y max 1, U/V p99 1)."""
    h, w, _ = rgb.shape
    y, uv = _yuv420_planes(rgb, matrix, full_range)
    return _levels(torch.cat([y, uv.reshape(h // 2, w)], dim=0))


def rgb_to_nv12(rgb: torch.Tensor, *, matrix: str | None = None, full_range: bool = False) -> torch.Tensor:
    """RGB -> NV12 (the input format of NVENC).

    rgb: (H, W, 3) uint8 with even H and W, any device.
    Returns (H * 3 // 2, W) uint8 on the same device; chroma is the mean of each 2x2 block.
    """
    h, w, _ = rgb.shape
    y, uv = _yuv420_planes(rgb, matrix, full_range)
    return _levels(torch.cat([y, uv.permute(1, 2, 0).reshape(h // 2, w)], dim=0))  # U, V interleaved
