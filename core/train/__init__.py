"""Training with known poses: homogeneous decoders and VAEs, resumable run directories."""
from cryoscape.core.train.config import PRESETS, TrainConfig
from cryoscape.core.train.loop import TrainingDiverged, train

__all__ = ["PRESETS", "TrainConfig", "TrainingDiverged", "train"]
