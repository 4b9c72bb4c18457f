"""Which LoRA adapters the serving engine serves: a fact the tuning side checks before training.

The engine computes every attached adapter in one batched forward, y += scaling·B·A·x
(serving/lora.py). A peft `LoraConfig` field set to anything but its value here changes that
forward (DoRA's magnitude vector, trained biases, fully trained modules, ...), so serving refuses
such an adapter with a 400, and tuning refuses the config before it spends GPU time, so the
tune -> serve loop never produces an adapter the endpoint cannot load. `use_rslora` and rank or
alpha patterns only change the scaling, which the engine applies.
"""
from __future__ import annotations

__all__ = ["SERVED_LORA", "unserved"]

#: peft LoraConfig field -> the only value served (None: unset, or any empty value)
SERVED_LORA = {"use_dora": False, "lora_bias": False, "bias": "none", "modules_to_save": None,
               "layer_replication": None, "trainable_token_indices": None, "target_parameters": None,
               "use_qalora": False, "alora_invocation_tokens": None, "monteclora_config": None, "use_bdlora": None}


def unserved(values: dict) -> tuple[str, object, object] | None:
    """The first (field, value, served value) of a LoraConfig's `values` the engine does not serve."""
    for field, served in SERVED_LORA.items():
        if field not in values:
            continue
        value = values[field]
        if value != served and not (served is None and not value):
            return field, value, served
    return None
