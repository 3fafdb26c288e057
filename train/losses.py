"""GHOST's loss terms (GHOST-SPEC.md "Training"), each a small pure function on tensors.

Masks are per-sample 0/1 float tensors (B,): `same` = 1 where the pair counts as the same
person (reconstruction), `diff = 1 - same` where it does not (adversarial terms). A masked
term is the mean over the selected samples, and 0 when none is selected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from train.settings import LossWeights

ARCFACE_SIZE = 112


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values, mask: (B,) -> scalar mean of values where mask is 1 (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


def adversarial_loss(fake_logits: Sequence[torch.Tensor], diff: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: sum over scales of mean(relu(1 - D(Y))) over different-identity
    samples. fake_logits: one (B, 1, h, w) map per discriminator scale; diff: (B,) 0/1."""
    return sum((masked_mean(_per_sample_mean(F.relu(1 - d.float())), diff) for d in fake_logits),
               torch.zeros((), device=diff.device))


def discriminator_loss(fake_logits: Sequence[torch.Tensor], real_logits: Sequence[torch.Tensor],
                       diff: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: 1/2 (sum_scales mean relu(1 + D(Y)) + sum_scales mean
    relu(1 - D(X_s))) over different-identity samples. Y must be detached by the caller."""
    fake = sum(masked_mean(_per_sample_mean(F.relu(1 + d.float())), diff) for d in fake_logits)
    real = sum(masked_mean(_per_sample_mean(F.relu(1 - d.float())), diff) for d in real_logits)
    return torch.as_tensor(0.5 * (fake + real))  # sum() is typed Tensor | float: a tensor here (no copy)


def identity_loss(source_embedding: torch.Tensor, result_embedding: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos(ArcFace(X_s), ArcFace(Y))); embeddings (B, D), unnormalised."""
    return (1 - F.cosine_similarity(source_embedding.float(), result_embedding.float(), dim=1)).mean()


def attribute_loss(target_attrs: Sequence[torch.Tensor], result_attrs: Sequence[torch.Tensor]) -> torch.Tensor:
    """1/2 sum over the attribute levels of mean((z_attr(X_t) - z_attr(Y))^2)."""
    total = sum(((a.float() - b.float()) ** 2).mean() for a, b in zip(target_attrs, result_attrs, strict=True))
    return torch.as_tensor(0.5 * total)  # sum() is typed Tensor | float: a tensor here (no copy)


def reconstruction_loss(result: torch.Tensor, target: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """1/2 mean((Y - X_t)^2) over same-person samples. result, target: (B, 3, S, S) in [-1, 1]."""
    return masked_mean(0.5 * _per_sample_mean((result.float() - target.float()) ** 2), same)


def eye_heatmap_loss(target_heatmaps: torch.Tensor, result_heatmaps: torch.Tensor) -> torch.Tensor:
    """MSE of the left eye heatmaps plus MSE of the right ones. Heatmaps (B, 2, h, w):
    channel 0 = left eye (WFLW landmark 96), 1 = right eye (97)."""
    t, r = target_heatmaps.float(), result_heatmaps.float()
    return F.mse_loss(r[:, 0], t[:, 0]) + F.mse_loss(r[:, 1], t[:, 1])


def to_arcface(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) in [-1, 1] -> (B, 3, 112, 112) bilinear, what the identity network reads."""
    if images.shape[-1] == ARCFACE_SIZE and images.shape[-2] == ARCFACE_SIZE:
        return images
    return F.interpolate(images, size=(ARCFACE_SIZE, ARCFACE_SIZE), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class GeneratorTerms:
    """The generator's loss terms of one step (scalars, float32); `eyes` is None when off."""

    adv: torch.Tensor
    id: torch.Tensor
    attr: torch.Tensor
    rec: torch.Tensor
    eyes: torch.Tensor | None

    def total(self, w: LossWeights) -> torch.Tensor:
        """The weighted sum GHOST minimises."""
        out = w.adv * self.adv + w.attr * self.attr + w.id * self.id + w.rec * self.rec
        return out + w.eyes * self.eyes if self.eyes is not None else out

    def as_floats(self) -> dict[str, float]:
        """Detached values by name (for logs)."""
        named = {"adv": self.adv, "id": self.id, "attr": self.attr, "rec": self.rec, "eyes": self.eyes}
        return {k: float(v.detach()) for k, v in named.items() if v is not None}
