"""KAITO's training_config.yaml: parse, check every key against the class that consumes it, catch
contradictions with the tuning method, all before a model is loaded.

The file has one top key `training_config` with six sections, as in KAITO's lora/qlora ConfigMaps:
ModelConfig and DatasetConfig (our dataclasses below, field names from KAITO's cli.py),
QuantizationConfig (transformers.BitsAndBytesConfig), LoraConfig (peft.LoraConfig),
TrainingArguments (transformers.TrainingArguments) and DataCollator (CollatorConfig below).
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contract.lora import unserved
from contract.tuningjob import METHODS, RESULTS_DIR

from .errors import ConfigError

TOP_KEY = "training_config"
SECTIONS = ("ModelConfig", "QuantizationConfig", "LoraConfig", "TrainingArguments", "DataCollator", "DatasetConfig")
DEFAULT_OUTPUT_DIR = RESULTS_DIR  # the tuning Job's results mount (contract.tuningjob)


MODEL_DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class ModelConfig:
    """How the base model is loaded (KAITO's ModelConfig; the inert KAITO loader flags are accepted)."""
    pretrained_model_name_or_path: str = "/workspace/tfs/weights"
    torch_dtype: str | None = None
    dtype: str | None = None
    local_files_only: bool = True
    device_map: str | None = "auto"
    trust_remote_code: bool = False
    m_revision: str | None = None
    revision: str | None = None
    cache_dir: str | None = None
    chat_template: str | None = None
    attn_implementation: str | None = None
    # Accepted for compatibility with KAITO configs; they have no effect on a local load.
    from_tf: bool = False
    force_download: bool = False
    resume_download: bool = False
    proxies: str | None = None
    output_loading_info: bool = False
    allow_remote_files: bool = False

    def __post_init__(self):
        for key in ("torch_dtype", "dtype"):
            value = getattr(self, key)
            if value is not None and value not in MODEL_DTYPES:
                raise ValueError(f"{key} {value!r} is not supported; accepted: {', '.join(MODEL_DTYPES)}")

    @property
    def effective_dtype(self) -> str | None:
        return self.dtype or self.torch_dtype


@dataclass
class DatasetConfig:
    """Where the data is and how it is split (KAITO's DatasetConfig, plus max_seq_length)."""
    dataset_path: str | None = None  # a file or folder under the data directory; default: every data file there
    dataset_extension: str | None = None  # parquet|json|jsonl|csv; default: from the file name
    shuffle_dataset: bool = True
    shuffle_seed: int = 42
    context_column: str | None = None
    response_column: str = "text"
    messages_column: str | None = None
    train_test_split: float = 0.8  # fraction used for training; 1 means no eval split
    max_seq_length: int = 2048  # longer examples are truncated

    def __post_init__(self):
        if not 0 < self.train_test_split <= 1:
            raise ValueError(f"train_test_split must be in (0, 1], got {self.train_test_split}")
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be at least 8, got {self.max_seq_length}")
        if self.dataset_extension is not None and self.dataset_extension.lstrip(".") not in DATA_EXTENSIONS:
            raise ValueError(
                f"dataset_extension {self.dataset_extension!r} is not supported; accepted: {', '.join(DATA_EXTENSIONS)}")


DATA_EXTENSIONS = ("parquet", "json", "jsonl", "csv")


@dataclass
class CollatorConfig:
    """KAITO's DataCollator section (DataCollatorForLanguageModeling's parameters).

    mlm and mlm_probability are accepted and ignored: a causal LM is trained on next tokens, and
    KAITO itself turns mlm off when the tokenizer has no mask token (every supported preset)."""
    mlm: bool = False
    mlm_probability: float = 0.15
    pad_to_multiple_of: int | None = 8
    return_tensors: str = "pt"

    def __post_init__(self):
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be positive, got {self.pad_to_multiple_of}")
        if self.return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', got {self.return_tensors!r}")


@dataclass(frozen=True)
class TuningConfig:
    method: str
    model: ModelConfig
    dataset: DatasetConfig
    collator: CollatorConfig
    quantization: dict[str, Any]  # BitsAndBytesConfig kwargs; empty when the base is not quantized
    lora: dict[str, Any]  # peft.LoraConfig kwargs
    training: dict[str, Any]  # transformers.TrainingArguments kwargs (output_dir set by the caller)

    @property
    def quantized(self) -> bool:
        return bool(self.quantization.get("load_in_4bit") or self.quantization.get("load_in_8bit"))


def load_yaml(path: str | Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read training config {str(path)!r}: {err.strerror}") from err
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"training config {str(path)!r} is not valid YAML: {err}") from err
    return doc if doc is not None else {}


def _unknown(section: str, key: str, accepted: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"training_config.{section}: unknown key {key!r}{hint}")


def _check_type(section: str, key: str, value: Any, annotation: Any) -> None:
    """Type-check a value against a simple annotation (bool, int, float, str, optional, unions)."""
    hint = annotation
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if typing.get_origin(hint) is typing.Literal:
        if value in typing.get_args(hint):
            return
        accepted = ", ".join(map(repr, typing.get_args(hint)))
        raise ConfigError(f"training_config.{section}.{key}: {value!r} is not accepted; accepted: {accepted}")
    for option in options:
        if typing.get_origin(option) is typing.Literal and value in typing.get_args(option):
            return
        if option is type(None) and value is None:
            return
        if option is bool and isinstance(value, bool):
            return
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if option is str and isinstance(value, str):
            return
        if option not in (bool, int, float, str, type(None)) and typing.get_origin(option) is not typing.Literal:
            return  # a richer type: the consuming class checks it
    names = ", ".join("null" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"training_config.{section}.{key}: expected {names}, got {value!r}")


def _build_dataclass(section: str, cls, values: dict):
    hints = typing.get_type_hints(cls)
    accepted = [f.name for f in dataclasses.fields(cls)]
    for key, value in values.items():
        if key not in accepted:
            raise _unknown(section, key, accepted)
        _check_type(section, key, value, hints[key])
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"training_config.{section}: {err}") from err


def _accepted_keys(section: str) -> list[str]:
    """Parameter names of the real class behind a section (imports transformers/peft lazily)."""
    if section == "TrainingArguments":
        from transformers import TrainingArguments
        return [f.name for f in dataclasses.fields(TrainingArguments) if f.init]
    if section == "LoraConfig":
        from peft import LoraConfig
        return [f.name for f in dataclasses.fields(LoraConfig) if f.init and f.name not in ("peft_type", "task_type")]
    if section == "QuantizationConfig":
        from transformers import BitsAndBytesConfig
        params = inspect.signature(BitsAndBytesConfig.__init__).parameters
        return [name for name, p in params.items() if name != "self" and p.kind is not p.VAR_KEYWORD]
    raise AssertionError(section)


def _check_keys(section: str, values: dict) -> None:
    accepted = _accepted_keys(section)
    for key in values:
        if key not in accepted:
            raise _unknown(section, key, accepted)
    if section == "LoraConfig":  # peft does not check value types itself
        from peft import LoraConfig
        try:
            hints = typing.get_type_hints(LoraConfig)
        except Exception:  # an unresolvable annotation in peft: fall back to the constructor's checks
            hints = {}
        for key, value in values.items():
            if key in hints:
                _check_type(section, key, value, hints[key])
        if "r" in values and isinstance(values["r"], int) and values["r"] < 1:
            raise ConfigError(f"training_config.LoraConfig.r must be at least 1, got {values['r']}")
        if (found := unserved(values)) is not None:
            key, value, served = found
            raise ConfigError(f"training_config.LoraConfig.{key} is {value!r}, but the serving engine serves only "
                              f"{key}: {served!r} (plain LoRA; contract/lora.py): the adapter could not be served")


def _check_method(method: str, quant: dict) -> None:
    four, eight = bool(quant.get("load_in_4bit")), bool(quant.get("load_in_8bit"))
    if four and eight:
        raise ConfigError("training_config.QuantizationConfig: load_in_4bit and load_in_8bit are both true; "
                          "choose one")
    if method == "lora" and (four or eight):
        key = "load_in_4bit" if four else "load_in_8bit"
        raise ConfigError(f"training_config.QuantizationConfig.{key} is true, which quantizes the base model, "
                          "but method is 'lora'; use method 'qlora' or set it to false")
    if method == "qlora" and not (four or eight):
        raise ConfigError("method 'qlora' needs a quantized base model: set "
                          "training_config.QuantizationConfig.load_in_4bit: true (as KAITO's qlora template does)")


_QUANT_TYPES = ("nf4", "fp4")
_COMPUTE_DTYPES = ("float32", "float16", "bfloat16")


def _check_quant_values(quant: dict) -> None:
    """Values BitsAndBytesConfig accepts silently but bitsandbytes rejects at load time."""
    kind = quant.get("bnb_4bit_quant_type")
    if kind is not None and kind not in _QUANT_TYPES:
        raise ConfigError(f"training_config.QuantizationConfig.bnb_4bit_quant_type: {kind!r} is not supported; "
                          f"accepted: {', '.join(_QUANT_TYPES)}")
    dtype = quant.get("bnb_4bit_compute_dtype")
    if dtype is not None and dtype not in _COMPUTE_DTYPES:
        raise ConfigError(f"training_config.QuantizationConfig.bnb_4bit_compute_dtype: {dtype!r} is not supported; "
                          f"accepted: {', '.join(_COMPUTE_DTYPES)}")


def _construct_hf(section: str, factory, kwargs: dict) -> None:
    """Build the real object once so bad values fail now, with the section named."""
    try:
        factory(**kwargs)
    except Exception as err:  # the HF classes raise ValueError, TypeError, ImportError...
        raise ConfigError(f"training_config.{section}: {err}") from err


def parse_training_config(doc: Any, method: str) -> TuningConfig:
    """Validate a loaded training_config.yaml for `method`; raise ConfigError naming the first bad key."""
    if method not in METHODS:
        raise ConfigError(f"method {method!r} is not supported; accepted: {', '.join(METHODS)}")
    if not isinstance(doc, dict) or TOP_KEY not in doc:
        found = ", ".join(map(str, doc)) if isinstance(doc, dict) and doc else "nothing"
        raise ConfigError(f"training config needs the top key {TOP_KEY!r}; found {found}")
    extra_top = [k for k in doc if k != TOP_KEY]
    if extra_top:
        raise ConfigError(f"training config: unknown top-level key {extra_top[0]!r}; only {TOP_KEY!r} is accepted")
    body = doc[TOP_KEY] or {}
    if not isinstance(body, dict):
        raise ConfigError(f"{TOP_KEY} must be a mapping of sections ({', '.join(SECTIONS)})")
    for section, values in body.items():
        if section not in SECTIONS:
            close = difflib.get_close_matches(str(section), SECTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"training_config: unknown section {section!r}{hint}; accepted: {', '.join(SECTIONS)}")
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"training_config.{section} must be a mapping, got {type(values).__name__}")
    sections = {name: dict(body.get(name) or {}) for name in SECTIONS}

    model = _build_dataclass("ModelConfig", ModelConfig, sections["ModelConfig"])
    dataset = _build_dataclass("DatasetConfig", DatasetConfig, sections["DatasetConfig"])
    collator = _build_dataclass("DataCollator", CollatorConfig, sections["DataCollator"])
    for name in ("QuantizationConfig", "LoraConfig", "TrainingArguments"):
        _check_keys(name, sections[name])
    quant, lora, training = sections["QuantizationConfig"], sections["LoraConfig"], sections["TrainingArguments"]
    _check_method(method, quant)
    _check_quant_values(quant)

    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, TrainingArguments

    if quant.get("load_in_4bit") or quant.get("load_in_8bit"):
        _construct_hf("QuantizationConfig", BitsAndBytesConfig, quant)
    else:
        quant = {}
    _construct_hf("LoraConfig", LoraConfig, lora)
    _construct_hf("TrainingArguments", TrainingArguments,
                  {**training, "output_dir": training.get("output_dir") or DEFAULT_OUTPUT_DIR, "report_to": "none"})
    return TuningConfig(method=method, model=model, dataset=dataset, collator=collator,
                        quantization=quant, lora=lora, training=training)


def load_training_config(path: str | Path, method: str) -> TuningConfig:
    return parse_training_config(load_yaml(path), method)
