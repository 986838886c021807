"""The SPAN objective, eqs. 15-20.

Conventions: the network's heatmaps are logits; ``heatmap_js`` reads them as distributions by a
softmax over the positions of each channel and normalises the targets to sum to one (eq. 15).
Every term is a mean over the views, points (or boundaries) it covers, so the paper's weights
lambda1, lambda2, gamma and eta keep their relative meaning whatever K and the batch size are.

Training batches hold P disturbed pairs (image_alpha, image_beta, D); the network sees them as one
batch ``cat([alpha_1..alpha_P, beta_1..beta_P])``. The first ``num_labeled`` pairs carry labels
(L_org and L_coord on both of their views); every pair gives L_scl when the variant is
self-calibrated, so the unlabeled pairs of semi-SCPAN enter only through L_scl (eq. 20): averaged
with the labeled pairs under eta by default, or summed with weight 1 as printed
(``loss.unlabeled_weighting``, :func:`scl_unlabeled_sum`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spanlib import ops
from spanlib.config import schema as config
from spanlib.config.schema import as_group
from spanlib.data.warp import apply_warp
from spanlib.model.decode import decode_landmarks
from spanlib.utils.errors import ParamError

FIELD_LOSSES = ("l1", "smooth_l1", "l2", "js")
HEATMAP_LOSSES = ("js", "ce", "js_pixel")
COORD_LOSSES = ("distance", "squared_sum")   # eq. 18: ours (mean distance) | as printed (sum of squares)
SCL_STAGES = ("all", "intermediate")         # L_scl over t = 1..T (ours) | t = 1..T-1 (eqs. 19-20)
UNLABELED_WEIGHTINGS = ("mean", "sum")       # eq. 20's unlabeled pairs: averaged with the labeled (ours) | summed
# Logit given to positions outside D's valid region: softmax sends them to exactly 0 in float32.
_OUTSIDE = -1.0e4


def heatmap_js(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 15 per channel, (B, K): the one call into the fused op (Triton on CUDA, reference on CPU)."""
    return ops.js_divergence(logits, target, weight)


def heatmap_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy H(q, softmax(x)) per channel, (B, K), with q = target / sum(target) (a channel
    whose target sums to 0 gives 0). Its gradient in the logits is p - q, where JS's is
    p_j (g_j - E_p[g]): at the start of training p is ~1/(h*w) everywhere, so JS pushes the
    target's pixels up about (h*w)/3 times more weakly (README, Deviations: heatmap term)."""
    x = logits.float().flatten(2)
    t = target.float().flatten(2)
    total = t.sum(dim=-1, keepdim=True)
    q = t / total.clamp_min(torch.finfo(torch.float32).tiny)
    return -(q * torch.log_softmax(x, dim=-1)).sum(dim=-1)


def heatmap_js_pixel(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 15 read pixel by pixel ("JS over p(i, j)"), per channel (B, K): the heatmaps are used as
    they are, p = sigmoid(logits) in [0, 1] against the target map q (peak 1), and

        JS = sum_(i, j) 1/2 [p log(2p / (p + q)) + q log(2q / (p + q))]

    which is >= 0 and 0 only where p = q (an f-divergence of non-negative measures). Summed over
    pixels, a map with four times the pixels (and twice the sigma) weighs four times as much,
    which is the paper's own reason for lambda1 = 1 at 128x128 against eta = 4 at 64x64 (section
    IV-F); a normalised-distribution JS has no such size dependence. Its logit gradient is
    p (1 - p) / 2 log(2p / (p + q)): O(1) per pixel from the first step, where the softmax
    reading's is O(1 / (h w)) (docs/model.md, "Why JS learns slowly"). ``valid`` (B, K, h, w) in
    {0, 1} restricts the sum to D's valid region (eq. 17)."""
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.to(compute)
    q = target.to(compute).clamp(0.0, 1.0)
    log_p = torch.nn.functional.logsigmoid(x)
    p = torch.exp(log_p)
    log_m = torch.log((p + q).clamp_min(torch.finfo(compute).tiny))
    log2 = 0.6931471805599453
    per_pixel = 0.5 * (p * (log_p + log2 - log_m) + torch.xlogy(q, q) + q * (log2 - log_m))
    if valid is not None:
        per_pixel = per_pixel * valid
    return per_pixel.flatten(2).sum(dim=-1)


_HEATMAP_TERMS = {"js": heatmap_js, "ce": heatmap_ce, "js_pixel": heatmap_js_pixel}
_schema_default = config.default


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """What the objective needs: the ``loss:`` group, the field radius and the input size. Built
    from params by ``from_params``. Its defaults are the schema's (``spanlib.config.schema``,
    ``LossConfigParams``: the one home of every default): the readings have one there; the weights,
    the field radius and the input size have none (params.yaml states them), so they are required
    here too when one is built directly (tests)."""

    lambda1: float               # last stage (eq. 16)
    lambda2: float               # BALI field term (eq. 16)
    gamma: float                 # L_coord (eqs. 18-19)
    eta: float                   # intermediate stages (eq. 16)
    # readings (README, Deviations): the field term; eq. 15 (js: softmax distributions, js_pixel:
    # pixel by pixel on sigmoid maps, ce: cross-entropy); eq. 18 (mean distance or the printed
    # sum of squares); L_scl on every stage or t = 1..T-1 (eq. 19); eq. 20's unlabeled pairs
    # averaged with the labeled pairs under eta or summed with weight 1
    field_loss: str = _schema_default("loss.field_loss")
    heatmap_loss: str = _schema_default("loss.heatmap_loss")
    coord_loss: str = _schema_default("loss.coord_loss")
    scl_stages: str = _schema_default("loss.scl_stages")
    unlabeled_weighting: str = _schema_default("loss.unlabeled_weighting")
    field_radius: int            # R (targets.field_radius): (2R+1)^2 training window, also the training decode window
    input_size: int              # crop.input_size

    @classmethod
    def from_params(cls, loss, targets, input_size: int, field_resolution: int) -> "LossConfig":
        """From the ``loss`` and ``targets`` groups (typed, or mappings checked by the schema)."""
        loss, targets = as_group("loss", loss), as_group("targets", targets)
        radius = targets.field_radius
        if 2 * radius + 1 > field_resolution:
            raise ParamError(
                f"targets.field_radius: the {2 * radius + 1}x{2 * radius + 1} window is larger than the "
                f"{field_resolution}x{field_resolution} last-stage map"
            )
        return cls(lambda1=float(loss.lambda1), lambda2=float(loss.lambda2), gamma=float(loss.gamma),
                   eta=float(loss.eta), field_loss=loss.field_loss, heatmap_loss=loss.heatmap_loss,
                   coord_loss=loss.coord_loss, scl_stages=loss.scl_stages,
                   unlabeled_weighting=loss.unlabeled_weighting, field_radius=radius, input_size=int(input_size))


def stage_weights(num_stages: int, lambda1: float, eta: float) -> list[float]:
    """Eq. 16: eta for the intermediate stages, lambda1 for the last."""
    return [eta] * (num_stages - 1) + [lambda1]


def stage_heatmap_loss(logits: list[torch.Tensor], targets: dict, weights: list[float],
                       kind: str = "js") -> torch.Tensor:
    """sum_t w_t * mean_{views, channels} JS(logits_t, target at h_t) (the heatmap part of eq. 16);
    ``kind`` picks the reading of JS (or cross-entropy) from ``_HEATMAP_TERMS``."""
    per_channel = _HEATMAP_TERMS[kind]
    total = logits[0].new_zeros((), dtype=torch.float32)
    for w, x in zip(weights, logits):
        total = total + w * per_channel(x, targets[x.shape[-1]]).mean()
    return total


def field_loss(pred: torch.Tensor, field: torch.Tensor, mask: torch.Tensor, kind: str, radius: int) -> torch.Tensor:
    """The BALI field term of eq. 16 on the (2R+1)^2 windows around the ground-truth landmarks.

    pred, field (B, 2, K, h, h) offsets in map pixels; mask (B, K, h, h) in {0, 1}.
    - l1 / smooth_l1 / l2: mean over the window pixels of |d|, Huber(d, beta=1) or d^2 / 2,
      summed over the two components (u, v);
    - js: the offsets become window-normalised positive maps exp(-|o|^2 / (2 s^2)), s = (R + 1) / 2,
      and the predicted map is compared with the ground-truth one by eq. 15 inside the window.
    """
    pred = pred.float()
    mask = mask.float()
    if kind == "js":
        scale = 2.0 * ((radius + 1) / 2.0) ** 2
        logits = -(pred ** 2).sum(dim=1) / scale
        logits = torch.where(mask > 0, logits, torch.full_like(logits, _OUTSIDE))
        target = torch.exp(-(field.float() ** 2).sum(dim=1) / scale) * mask
        return heatmap_js(logits, target).mean()
    diff = pred - field.float()
    if kind == "l1":
        per = diff.abs()
    elif kind == "smooth_l1":
        per = torch.nn.functional.smooth_l1_loss(pred, field.float(), reduction="none", beta=1.0)
    elif kind == "l2":
        per = 0.5 * diff ** 2
    else:
        raise ParamError(f"loss.field_loss: expected one of {', '.join(FIELD_LOSSES)}, got {kind!r}")
    per = per.sum(dim=1) * mask
    return per.sum() / mask.sum().clamp_min(1.0)


def coord_loss(pred: torch.Tensor, target: torch.Tensor, input_size: int, kind: str = "distance") -> torch.Tensor:
    """Eq. 18 on decoded and true landmarks (B, K, 2), both normalised to [0, 1] by the crop size.

    - ``distance`` (ours): the Euclidean distance, averaged over points and images;
    - ``squared_sum`` (as printed): the squared distance summed over the K points, averaged over
      images. Its gradient grows with the error instead of having a constant size, and its scale
      is K times a mean, which changes what gamma = 40 means (README, Deviations).
    """
    d = (pred.float() - target.float()) / float(input_size)
    if kind == "squared_sum":
        return (d ** 2).sum(dim=-1).sum(dim=-1).mean()
    # sqrt(|d|^2 + 1e-12) as the 2-norm of (dx, dy, 1e-6): torch.sqrt of a tensor goes to MKL's vector
    # maths, whose bits depend on the CPU; the norm's final sqrt is the correctly rounded scalar one
    eps = torch.full_like(d[..., :1], 1e-6)
    return torch.linalg.vector_norm(torch.cat([d, eps], dim=-1), dim=-1).mean()


def scl_maps_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, theta: torch.Tensor,
                  flipped: torch.Tensor, perm, crop_size: int, kind: str = "js") -> torch.Tensor:
    """Eq. 17 for one stage and one kind of map: JS(H_beta, D(H_alpha)) inside D's valid region.

    D(H_alpha) is the distribution softmax(H_alpha) warped into view beta (``apply_warp``,
    channels permuted on flips) and used as the target (no gradient through it, as the JS op's
    target); H_beta's logits are restricted to the valid region and renormalised there by the
    softmax. Mean over pairs and channels; a channel warped entirely out of view counts 0.
    ``kind="js_pixel"``: the pixel-wise reading, D(sigmoid(H_alpha)) against sigmoid(H_beta) summed
    over the valid region (any other kind keeps the softmax JS: CE has no symmetric counterpart).
    """
    b, c, h, w = logits_a.shape
    if kind == "js_pixel":
        maps_a = torch.sigmoid(logits_a.detach().float())
        warped, valid = apply_warp(maps_a, theta.float(), flipped, perm, crop_size)
        inside = (valid > 0.5).float()
        return heatmap_js_pixel(logits_b, (warped * inside).detach(), inside.expand_as(warped)).mean()
    p_a = torch.softmax(logits_a.detach().float().reshape(b, c, h * w), dim=-1).view(b, c, h, w)
    warped, valid = apply_warp(p_a, theta.float(), flipped, perm, crop_size)
    inside = valid > 0.5
    target = (warped * inside).detach()
    logits = torch.where(inside, logits_b.float(), torch.full_like(logits_b, _OUTSIDE, dtype=torch.float32))
    return heatmap_js(logits, target).mean()


def span_objective(outputs: dict, num_labeled: int, targets: dict | None, pairs: dict, spec,
                   config: LossConfig) -> tuple[torch.Tensor, dict]:
    """Eq. 19 (eq. 20 when unlabeled pairs are present): total loss and its terms as floats
    (the weighted terms of :func:`objective_terms`)."""
    terms = objective_terms(outputs, num_labeled, targets, pairs, spec, config)
    total = sum(terms.values())
    return total, {name: float(value.detach()) for name, value in terms.items()}


def objective_terms(outputs: dict, num_labeled: int, targets: dict | None, pairs: dict, spec,
                    config: LossConfig) -> dict[str, torch.Tensor]:
    """The weighted terms of eq. 19 (eq. 20) as tensors: heat, boundary, field, coord, scl.

    ``outputs``: SpanNet outputs for ``cat([alpha views, beta views])`` of P pairs.
    ``targets`` (for the 2 * num_labeled labeled views, ordered [alpha_1..n, beta_1..n]):
    ``heatmaps`` {res: (2n, K, res, res)}, ``boundaries`` {res: (2n, C, res, res)}, ``field``
    (2n, 2, K, r, r), ``field_mask`` (2n, K, r, r), ``landmarks`` (2n, K, 2) crop pixels.
    ``pairs``: ``theta`` (P, 2, 3), ``flipped`` (P,), ``point_perm`` (K,), ``boundary_perm`` (C,).
    ``spec``: the variant's :class:`spanlib.config.variants.VariantSpec`.
    """
    heat = outputs["heatmaps"]
    bounds = outputs["boundaries"]
    num_pairs = heat[-1].shape[0] // 2
    weights = stage_weights(len(heat), config.lambda1, config.eta)
    terms: dict[str, torch.Tensor] = {}
    if num_labeled > 0:
        idx = torch.cat([torch.arange(num_labeled), num_pairs + torch.arange(num_labeled)]).to(heat[-1].device)
        take = (lambda x: x) if num_labeled == num_pairs else (lambda x: x.index_select(0, idx))
        terms["heat"] = stage_heatmap_loss([take(x) for x in heat], targets["heatmaps"], weights,
                                           config.heatmap_loss)
        if spec.boundaries:
            terms["boundary"] = stage_heatmap_loss([take(x) for x in bounds], targets["boundaries"], weights,
                                                   config.heatmap_loss)
        labeled_out = {"heatmaps": [take(heat[-1])], "input_size": config.input_size,
                       "offsets": None if outputs.get("offsets") is None else take(outputs["offsets"])}
        if spec.bali:
            terms["field"] = config.lambda2 * field_loss(
                labeled_out["offsets"], targets["field"], targets["field_mask"], config.field_loss,
                config.field_radius)
        decoded = decode_landmarks(labeled_out, config.field_radius, config.input_size)
        terms["coord"] = config.gamma * coord_loss(decoded, targets["landmarks"], config.input_size, config.coord_loss)
    if spec.self_calibrated:
        # eqs. 19-20 sum L_scl over t = 1..T-1 with eta; "all" also weighs the last stage by lambda1
        scl_weights = weights if config.scl_stages == "all" else weights[:-1] + [0.0]
        maps = [(heat, pairs["point_perm"])] + ([(bounds, pairs["boundary_perm"])] if spec.boundaries else [])
        if config.unlabeled_weighting == "sum" and num_labeled < num_pairs:
            terms["scl"] = scl_unlabeled_sum(maps, num_labeled, num_pairs, pairs, scl_weights, config)
        else:  # "mean" (and any batch without unlabeled pairs): every pair alike
            terms["scl"] = scl_stage_sum(maps, 0, num_pairs, num_pairs, pairs, scl_weights, config)
    return terms


def _pair_range(values, start: int, stop: int, num_pairs: int):
    """values[start:stop] of a per-pair tensor, or ``values`` itself for the whole batch (so the
    default path runs the same operations as before the slicing existed)."""
    return values if (start, stop) == (0, num_pairs) else values[start:stop]


def scl_stage_sum(maps: list, start: int, stop: int, num_pairs: int, pairs: dict, weights: list[float],
                  config: LossConfig) -> torch.Tensor:
    """sum_t w_t * eq. 17 on pairs start..stop-1 (mean over those pairs and the channels), for each
    ``(stage maps, channel permutation)`` of ``maps`` (landmark, then boundary heatmaps)."""
    theta = _pair_range(pairs["theta"], start, stop, num_pairs)
    flipped = _pair_range(pairs["flipped"], start, stop, num_pairs)
    scl = maps[0][0][-1].new_zeros((), dtype=torch.float32)
    for stages, perm in maps:
        for w, x in zip(weights, stages):
            scl = scl + w * scl_maps_loss(x[start:stop], x[num_pairs + start:num_pairs + stop], theta, flipped,
                                          perm, config.input_size, config.heatmap_loss)
    return scl


def scl_unlabeled_sum(maps: list, num_labeled: int, num_pairs: int, pairs: dict, weights: list[float],
                      config: LossConfig) -> torch.Tensor:
    """L_scl with eq. 20's unlabeled sum as printed (``loss.unlabeled_weighting: sum``).

    N labeled and M = num_pairs - N unlabeled pairs; S_t(i) = eq. 17 of pair i at stage t (JS of the
    landmark maps plus JS of the boundary maps, each a mean over channels); w_t = ``weights`` (eta
    for t < T; lambda1 or 0 for t = T, per ``loss.scl_stages``); s_t = 1 for t < T, and for t = T
    under ``scl_stages: all`` (0 under ``intermediate``), whatever eta and lambda1 are.

    - ``mean`` (ours, the default; :func:`scl_stage_sum` over all pairs):
      sum_t w_t / (N + M) * sum_{i=1}^{N+M} S_t(i). The unlabeled pairs are averaged together with
      the labeled ones under the same weights: every pair weighs w_t / (N + M).
    - ``sum`` (this function; eq. 20 as printed):
      sum_t w_t / N * sum_{n=1}^{N} S_t(n) + 1 / N * sum_{m=1}^{M} sum_t s_t S_t(m).
      Eq. 19's labeled L_scl plus eq. 20's unweighted (no eta) sum over the unlabeled pairs, the
      whole divided by N as every labeled term of ours is a mean over the N labeled pairs where
      eq. 19 sums over n: the printed ratio of an unlabeled pair to a labeled one (1 : eta at an
      intermediate stage) is kept. A labeled pair weighs w_t / N (not diluted by M), an unlabeled
      one 1 / N instead of w_t / (N + M): with N = 8, M = 4, eta = 4, 0.125 against 0.333 at an
      intermediate stage. All M unlabeled pairs together weigh M / N per stage (eta M / (N + M)
      under ``mean``), and the labeled pairs eta (eta N / (N + M) under ``mean``).
    - Stages: both follow ``loss.scl_stages``. Eq. 20 exactly as printed (t = 1..T-1) is ``sum``
      with ``scl_stages: intermediate``; under ``all`` an unlabeled pair's last stage enters with
      weight 1 too (eq. 17's unweighted sum over t = 1..T).
    - N = 0 (only unlabeled pairs): divisor 1, the printed sum itself. M = 0: both readings agree.
    """
    unlabeled = num_pairs - num_labeled
    unit = [1.0] * (len(weights) - 1) + [1.0 if config.scl_stages == "all" else 0.0]  # eq. 20: no eta
    total = float(unlabeled) / float(max(num_labeled, 1)) * scl_stage_sum(
        maps, num_labeled, num_pairs, num_pairs, pairs, unit, config)
    if num_labeled > 0:
        total = scl_stage_sum(maps, 0, num_labeled, num_pairs, pairs, weights, config) + total
    return total
