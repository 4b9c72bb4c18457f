"""The MBU arithmetic the GPU bench reports (torch-free)."""
import pytest

from serving.roofline import decode_bytes, mbu, peak_gbps


def test_a_step_reading_peak_bandwidth_worth_of_bytes_per_second_is_full_utilization():
    # phi-3-mini in bf16: 3.82e9 parameters x 2 bytes; 2,000 tokens of KV at 393,216 bytes each
    weights, kv = int(3.82e9 * 2), 2 * 32 * 32 * 96 * 2
    per_step = decode_bytes(weights, kv, 2000)
    assert per_step == weights + kv * 2000
    step_s = per_step / (4800 * 1e9)  # exactly what an H200's 4.8 TB/s moves in that time
    assert mbu(step_s, per_step, 4800) == pytest.approx(1.0)
    assert mbu(2 * step_s, per_step, 4800) == pytest.approx(0.5)


def test_device_names_find_their_bandwidth_longest_match_first():
    assert peak_gbps("NVIDIA H200") == 4800
    assert peak_gbps("NVIDIA H100 NVL") == 3900 and peak_gbps("NVIDIA H100 80GB HBM3") == 3350
    assert peak_gbps("NVIDIA A10G") == 600
    assert peak_gbps("Some Future GPU") is None


@pytest.mark.parametrize("args", [(0, 1, 1.0), (1.0, 1, 0)])
def test_bad_inputs_are_refused(args):
    with pytest.raises(ValueError):
        mbu(*args)
    with pytest.raises(ValueError):
        decode_bytes(-1, 0, 0)
