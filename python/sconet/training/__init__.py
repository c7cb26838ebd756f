"""Training: configuration and recipes, the data of a run, optimisers and schedules (registries),
warm starts, several processes, monitoring, and the loop itself (:func:`train`).

``torchrun --nproc_per_node N -m sconet.training [train options]`` runs one process per device.
"""

from sconet.training.config import (
    FREEZE_MODES,
    SECTIONS,
    ConfigError,
    DataConfig,
    LossConfig,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    TrainError,
    config_from_dict,
)
from sconet.training.data import DataSetup, carve_validation, prepare_data
from sconet.training.loop import RunResult, train
from sconet.training.optim import lr_factor
from sconet.training.recipes import (
    apply_overrides,
    list_recipes,
    load_recipe,
    parse_override,
    recipe_keys,
    recipe_path,
    to_toml,
)
from sconet.training.seeds import seed_configs, train_seeds
from sconet.training.warmstart import (
    SHAPE_KEYS,
    adopt_init_shape,
    checkpoint_shape,
    frozen_modules,
    init_from,
    set_frozen,
)

__all__ = [
    "FREEZE_MODES",
    "SECTIONS",
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "config_from_dict",
    "DataSetup",
    "carve_validation",
    "prepare_data",
    "RunResult",
    "TrainError",
    "train",
    "lr_factor",
    "apply_overrides",
    "list_recipes",
    "load_recipe",
    "parse_override",
    "recipe_keys",
    "recipe_path",
    "to_toml",
    "SHAPE_KEYS",
    "adopt_init_shape",
    "checkpoint_shape",
    "frozen_modules",
    "init_from",
    "set_frozen",
    "seed_configs",
    "train_seeds",
]
