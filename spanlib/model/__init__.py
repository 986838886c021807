"""The SPAN model family: hourglass blocks, SCPA attention, the BALI head and the network."""

from spanlib.model.network import SpanNet, build_model, check_model_params
from spanlib.model.profile import count_flops, count_parameters, model_profile, size_on_disk

__all__ = [
    "SpanNet", "build_model", "check_model_params",
    "count_flops", "count_parameters", "model_profile", "size_on_disk",
]
