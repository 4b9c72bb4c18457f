"""Multi-GPU placement: accelerate's planner on empty-weights models of real configs, on the CPU."""
import pytest
from transformers import FalconConfig, LlamaConfig

import presets
from serving.errors import ModelLoadError
from serving.placement import GIB, plan

# tiiuae/falcon-40b's config.json (the values that set the shape)
FALCON_40B = FalconConfig(hidden_size=8192, num_attention_heads=128, num_hidden_layers=60, num_kv_heads=8,
                          new_decoder_architecture=True, parallel_attn=True, bias=False, vocab_size=65024)
# meta-llama/Llama-2-70b-hf's config.json
LLAMA_70B = LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                        num_key_value_heads=8, vocab_size=32000, max_position_embeddings=4096)


def test_falcon_40b_is_split_over_two_80_gib_gpus():
    p = plan(FALCON_40B, gpus=2, bytes_per_gpu=80 * GIB)
    assert abs(p.weight_bytes - presets.get_preset("falcon-40b").weight_bytes) < 0.01 * p.weight_bytes
    assert p.gpus_used == 2
    layers = {k: v for k, v in p.device_map.items() if ".h." in k}
    assert len(layers) == 60  # whole decoder layers, never split
    per_gpu = [sum(1 for d in layers.values() if d == g) for g in (0, 1)]
    assert min(per_gpu) >= 20  # both GPUs carry a real share


def test_falcon_40b_on_two_16_gib_gpus_is_refused_before_loading_with_the_numbers():
    with pytest.raises(ModelLoadError) as e:
        plan(FALCON_40B, gpus=2, bytes_per_gpu=16 * GIB)
    msg = str(e.value)
    assert "does not fit" in msg and "77.9 GiB" in msg and "2 GPU(s) x 16.0 GiB" in msg


def test_llama_70b_is_split_over_four_80_gib_gpus():
    p = plan(LLAMA_70B, gpus=4, bytes_per_gpu=80 * GIB)
    assert 125 * GIB < p.weight_bytes < 135 * GIB
    assert p.gpus_used == 4
    assert all(isinstance(d, int) for d in p.device_map.values())
    with pytest.raises(ModelLoadError, match="does not fit"):
        plan(LLAMA_70B, gpus=2, bytes_per_gpu=48 * GIB)
