"""ScoNet-MT(-ske) and DRF (:mod:`sconet`), their layers, their losses (a registry) and loading of
foreign (OpenGait) state dicts.
"""

from sconet.models.foreign import CheckpointMismatchError, LoadReport, load_opengait_state_dict
from sconet.models.layers import (
    BASE_CHANNELS,
    PAVGuidedAttention,
    horizontal_pool,
    predict,
    temporal_max_pool,
)
from sconet.models.losses import (
    CrossEntropyPartLoss,
    ScoNetLoss,
    TripletLoss,
    gather_for_triplet,
    inverse_frequency_weights,
    pairwise_part_distances,
)
from sconet.models.sconet import (
    ARCHS,
    PGA_MODES,
    STATE_DICT_ENTRIES,
    ModelConfig,
    ModelOutput,
    ScoNetMT,
    build_model,
    count_parameters,
    init_weights,
)

__all__ = [
    "CheckpointMismatchError",
    "LoadReport",
    "load_opengait_state_dict",
    "PAVGuidedAttention",
    "horizontal_pool",
    "predict",
    "temporal_max_pool",
    "CrossEntropyPartLoss",
    "ScoNetLoss",
    "TripletLoss",
    "gather_for_triplet",
    "inverse_frequency_weights",
    "pairwise_part_distances",
    "ARCHS",
    "BASE_CHANNELS",
    "PGA_MODES",
    "STATE_DICT_ENTRIES",
    "ModelConfig",
    "ModelOutput",
    "ScoNetMT",
    "build_model",
    "count_parameters",
    "init_weights",
]
