"""The multi-speaker acoustic model (FastSpeech 2 + learned alignment + AdaSpeech conditioning),
its typed config, loss and checkpoints."""

from metatts.model.checkpoint import (Checkpoint, CheckpointError, load_checkpoint,
                                      save_checkpoint)
from metatts.model.config import (Config, ConfigError, DataConfig, LossConfig, ModelConfig,
                                  TrainConfig, load_config)
from metatts.model.fastspeech2 import (GROUPS, NEW_SPEAKER, FastSpeech2, ModelOutput, Prediction,
                                       count_parameters)
from metatts.model.losses import LossOutput

__all__ = [
    "Checkpoint", "CheckpointError", "Config", "ConfigError", "DataConfig", "FastSpeech2",
    "GROUPS", "LossConfig", "LossOutput", "ModelConfig", "ModelOutput", "NEW_SPEAKER",
    "Prediction", "TrainConfig", "count_parameters", "load_checkpoint", "load_config",
    "save_checkpoint",
]
