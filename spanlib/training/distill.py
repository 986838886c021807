"""Knowledge distillation of the landmark heatmaps (issue 23: a small, fast model taught by the
bundled one).

With ``train.teacher`` set, every training step also runs the teacher (frozen, eval mode) on the
labeled views the student sees, and the heatmap target of each landmark becomes the mixture

    q = (1 - w) * g / sum(g) + w * p_teacher

of the ground-truth map g (normalised, as the heatmap terms of eq. 15 read it) and the teacher's
last-stage distribution p_teacher = softmax(teacher logits), resampled to the student's map
resolution; w = ``train.teacher_weight``. This is Hinton et al.'s soft-target distillation read
for heatmaps: with ``loss.heatmap_loss: ce`` the term is the cross-entropy against q. Every other
term (BALI field, L_coord, L_scl, boundaries) keeps the ground truth. The teacher sees the very
crops of the student, resized to its own input size: both cut the same box (``crop.scale`` must
agree), so its maps cover the same part of the face.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spanlib.inference.checkpoint import load_model
from spanlib.utils.errors import ParamError


def load_teacher(path: str, *, num_points: int, crop_scale: float, device: torch.device) -> torch.nn.Module:
    """The frozen teacher of ``train.teacher``, checked to cut crops like the student (same number
    of landmarks, same ``crop.scale``)."""
    teacher = load_model(path, device)
    if teacher.scheme.num_points != num_points:
        raise ParamError(f"train.teacher {path}: the teacher has {teacher.scheme.num_points} landmarks, "
                         f"the student {num_points}")
    scale = float(teacher.params["crop"]["scale"])
    if abs(scale - float(crop_scale)) > 1e-9:
        raise ParamError(f"train.teacher {path}: the teacher's crop.scale is {scale}, the student's "
                         f"{crop_scale}; its maps would cover another part of the face")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def overlap_matrix(size_in: int, size_out: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(size_out, size_in): the share of input bin i = [i, i + 1) / size_in of the unit interval that
    falls in output bin j = [j, j + 1) / size_out. Each column sums to 1, so mass is kept."""
    edges_in = torch.arange(size_in + 1, dtype=torch.float64) / size_in
    edges_out = torch.arange(size_out + 1, dtype=torch.float64) / size_out
    low = torch.maximum(edges_out[:-1, None], edges_in[None, :-1])
    high = torch.minimum(edges_out[1:, None], edges_in[None, 1:])
    return ((high - low).clamp_min(0.0) * size_in).to(dtype=dtype, device=device)


def resample_distribution(prob: torch.Tensor, size: int) -> torch.Tensor:
    """(B, K, h, w) distributions (each channel sums to 1) -> (B, K, size, size), each channel again
    summing to 1. Both grids cover the same square (pixel centres at (i + 0.5) / h), and each input
    pixel's mass is shared among the output pixels its square overlaps, in proportion to the area
    (:func:`overlap_matrix`, rows then columns): no blur beyond the coarser grid's own."""
    h, w = prob.shape[-2:]
    if h == size and w == size:
        return prob
    rows = overlap_matrix(h, size, prob.dtype, prob.device)
    cols = overlap_matrix(w, size, prob.dtype, prob.device)
    return rows @ prob @ cols.T


@torch.no_grad()
def teacher_distribution(teacher: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The teacher's last-stage heatmaps as distributions (B, K, h, w) on ``images`` (B, 3, S, S)
    in [0, 1], resized to the teacher's input size first."""
    size = int(teacher.params["crop"]["input_size"])
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > size)
    logits = teacher(images)["heatmaps"][-1].float()
    b, k, h, w = logits.shape
    return torch.softmax(logits.reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)


def mix_targets(heatmaps: dict, teacher_prob: torch.Tensor, weight: float) -> dict:
    """``{res: (1 - w) g / sum(g) + w p_teacher}`` for the ground-truth target maps ``heatmaps``
    ``{res: (N, K, res, res)}``. A channel whose ground-truth map is empty (a landmark outside the
    crop: the heatmap terms give it 0) stays empty."""
    out = {}
    for res, target in heatmaps.items():
        target = target.float()
        total = target.sum(dim=(-2, -1), keepdim=True)
        gt = target / total.clamp_min(torch.finfo(torch.float32).tiny)
        mixed = (1.0 - weight) * gt + weight * resample_distribution(teacher_prob, int(res))
        out[res] = torch.where(total > 0, mixed, torch.zeros_like(mixed))
    return out


def distil_targets(teacher: torch.nn.Module, weight: float, images: torch.Tensor, num_labeled: int,
                   targets: dict) -> dict:
    """``targets`` of one training batch with the heatmaps mixed with the teacher's
    (:func:`mix_targets`). ``images`` is ``cat([alpha views, beta views])``; the first
    ``num_labeled`` pairs of each half are the labeled views the targets belong to."""
    pairs = images.shape[0] // 2
    idx = torch.cat([torch.arange(num_labeled), pairs + torch.arange(num_labeled)]).to(images.device)
    prob = teacher_distribution(teacher, images.index_select(0, idx))
    return {**targets, "heatmaps": mix_targets(targets["heatmaps"], prob, weight)}
