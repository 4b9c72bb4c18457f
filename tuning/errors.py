"""The tuning package's one error hierarchy.

Every failure a user can cause (bad config, unsafe URL, unusable dataset, failed push) derives from
TuningError, so the CLI can print its message and exit non-zero without a traceback.
"""
from __future__ import annotations


class TuningError(Exception):
    """Base class: the message is meant for the user and never contains secrets."""


class ConfigError(TuningError):
    """training_config.yaml or the command line is invalid (raised before any model is loaded)."""


class UnsafeURLError(TuningError):
    """An input URL has a forbidden scheme or resolves to a non-public address."""


class DownloadError(TuningError):
    """An input URL could not be fetched (after retries), or it exceeded the size limit."""


class DatasetError(TuningError):
    """The input data has no supported file, an unreadable file, or no usable columns."""


class ModelLoadError(TuningError):
    """The base model or tokenizer could not be loaded."""


class OutputError(TuningError):
    """Writing or pushing the adapter failed."""
