"""LoRA/QLoRA fine-tuning with KAITO's training_config.yaml: `python -m tuning` or `kaito tune`.

Public surface: `run(TuneRequest)`, `parse_training_config`, `load_training_config`, the errors.
Importing this package loads neither torch nor transformers.
"""
from .config import TuningConfig, load_training_config, parse_training_config
from .errors import (ConfigError, DatasetError, DownloadError, ModelLoadError, OutputError, TuningError,
                     UnsafeURLError)
from .runner import TuneRequest, run

__all__ = ["TuneRequest", "run", "TuningConfig", "load_training_config", "parse_training_config", "TuningError",
           "ConfigError", "DatasetError", "DownloadError", "ModelLoadError", "OutputError", "UnsafeURLError"]
