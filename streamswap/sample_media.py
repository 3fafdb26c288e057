"""Real face images that StreamSwap's dependencies ship, and a slow pan/zoom video made from one.

Used by `streamswap demo` so that it needs no network and no files from outside the installed
packages: insightface ships `t1.jpg` (a group photo, six faces) and `Tom_Hanks_54745.png`,
scikit-image ships `astronaut.png`. The packages are located with `find_spec`, not imported.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from streamswap.errors import InputError

SHIPPED = {
    "group": ("insightface", "data/images/t1.jpg"),
    "tom_hanks": ("insightface", "data/images/Tom_Hanks_54745.png"),
    "astronaut": ("skimage", "data/astronaut.png"),
}


def shipped_image(name: str) -> Path:
    """Path of a shipped image (`group`, `tom_hanks`, `astronaut`); `InputError` if its package is absent."""
    package, rel = SHIPPED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"the demo image {name!r} comes with the {package} package, which is not installed; "
            "run `make demo` (it installs everything)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise InputError(f"{path} is missing from the installed {package} package; reinstall it")
    return path


@dataclass(frozen=True)
class PanZoom:
    """A slow camera move over a still: `seconds` at `fps`, output `size` (W, H), zooming from
    1 to `zoom` and back while the window drifts across the picture."""

    seconds: float = 6.0
    fps: int = 25
    size: tuple[int, int] = (640, 360)
    zoom: float = 1.35


def pan_zoom_frames(image: torch.Tensor, move: PanZoom = PanZoom()) -> Iterator[torch.Tensor]:
    """Yield frames of `move` over `image` ((1, 3, H, W) uint8 RGB, as `read_image` gives): each
    (h, w, 3) uint8 RGB (the `Frame` layout), on the image's device.

    The window keeps the output's aspect ratio and stays inside the picture.
    """
    src = image.float()
    ih, iw = image.shape[-2:]
    ow, oh = move.size
    base_w = min(iw, ih * ow / oh)  # largest window of the output's aspect ratio
    n = max(1, round(move.seconds * move.fps))
    for i in range(n):
        t = i / max(1, n - 1)
        z = 1 + (move.zoom - 1) * math.sin(math.pi * t)  # in and back out
        ww, wh = base_w / z, base_w / z * oh / ow
        cx = ww / 2 + (iw - ww) * (0.5 + 0.5 * math.sin(2 * math.pi * t - math.pi / 2))
        cy = wh / 2 + (ih - wh) * 0.5
        x0, y0 = int(round(cx - ww / 2)), int(round(cy - wh / 2))
        crop = src[:, :, max(0, y0) : y0 + int(wh), max(0, x0) : x0 + int(ww)]
        out = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)
        yield out[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
