"""The SPAN model family: hourglass blocks, SCPA attention, the BALI head and the network."""

from spanlib.model.network import VARIANTS, SpanNet, VariantSpec, build_model, check_model_params, variant_spec
from spanlib.model.profile import count_flops, count_parameters, model_profile, size_on_disk

__all__ = [
    "VARIANTS", "SpanNet", "VariantSpec", "build_model", "check_model_params", "variant_spec",
    "count_flops", "count_parameters", "model_profile", "size_on_disk",
]
