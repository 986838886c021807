"""The five variants of the study and what each adds to the stacked-hourglass baseline: the one
home of the variant names (the params schema's choices, ``spanlib train --variant``, the profile
table, the network builder). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from spanlib.utils.errors import ParamError


@dataclass(frozen=True)
class VariantSpec:
    """What a variant adds to the stacked-hourglass baseline (Table ablation rows of the paper)."""

    boundaries: bool       # boundary heatmaps B_c at every stage
    scpa: bool             # SCPA attention between stages (eqs. 9-10)
    bali: bool             # BALI fields on the last stage (eq. 2, decoded by eq. 5)
    self_calibrated: bool  # L_scl between the two disturbed views (eq. 17)
    unlabeled: bool        # unlabeled faces in the objective (eq. 20)


VARIANT_SPECS: dict[str, VariantSpec] = {
    "shn": VariantSpec(boundaries=False, scpa=False, bali=False, self_calibrated=False, unlabeled=False),
    "shn_bali": VariantSpec(boundaries=False, scpa=False, bali=True, self_calibrated=False, unlabeled=False),
    "shn_scpa": VariantSpec(boundaries=True, scpa=True, bali=False, self_calibrated=True, unlabeled=False),
    "scpan": VariantSpec(boundaries=True, scpa=True, bali=True, self_calibrated=True, unlabeled=False),
    "semi_scpan": VariantSpec(boundaries=True, scpa=True, bali=True, self_calibrated=True, unlabeled=True),
}
VARIANTS = tuple(VARIANT_SPECS)


def variant_spec(name: str) -> VariantSpec:
    if name not in VARIANT_SPECS:
        raise ParamError(f"model.variant: unknown variant {name!r}; expected one of {', '.join(VARIANT_SPECS)}")
    return VARIANT_SPECS[name]
