"""The eye loss's landmark network: AWL's FAN (WFLW, 98 landmarks), frozen.

GHOST compares the heatmaps of WFLW landmarks 96 (left eye centre) and 97 (right eye centre)
from the last hourglass, for the target and the result, with the images mapped from [-1, 1]
to [0, 1] as the network expects.
"""

from __future__ import annotations

import torch
from torch import nn

from streamswap.models.awl_fan import FAN

EYE_LANDMARKS = (96, 97)  # WFLW left and right eye centres


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm running statistics) and no parameter gradients, in place."""
    return net.eval().requires_grad_(False)


def tiny_fan() -> FAN:
    """A random FAN with the published interface (98 landmarks, 64 px heatmaps for 256 px
    input) and tiny widths: for CPU smoke runs and tests."""
    # no final ReLU: random weights would otherwise give all-zero heatmaps (no signal)
    return FAN(num_modules=1, num_landmarks=98, end_relu=False, depth=4, features=8, stem=4)


class EyeHeatmaps(nn.Module):
    """Frozen FAN -> eye heatmaps. Input (B, 3, 256, 256) RGB in [-1, 1] (the generator's
    range), any float dtype; output (B, 2, 64, 64): landmarks 96 and 97 of the last hourglass.
    Gradients flow to the input, never into the FAN (its parameters are frozen)."""

    def __init__(self, fan: FAN) -> None:
        super().__init__()
        self.fan = freeze(fan)

    def train(self, mode: bool = True) -> EyeHeatmaps:
        # stays in eval mode whatever the trainer does: frozen BatchNorm statistics
        super().train(False)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        heatmaps = self.fan(images * 0.5 + 0.5)[-1]
        return heatmaps[:, list(EYE_LANDMARKS)]
