"""The model's parameters must be exactly the released checkpoint's, so it loads unchanged."""

from pathlib import Path

import torch

from tased_batch.model.network import TASEDNet

TSV = Path(__file__).parent / "data" / "tased_state_dict.tsv"


def released_keys() -> list[tuple[str, str]]:
    rows = [line.rstrip("\n").split("\t") for line in TSV.read_text().splitlines() if not line.startswith("#")]
    return [(key, shape) for key, shape, _dtype in rows]


def test_state_dict_keys_and_shapes_equal_the_released_list():
    expected = released_keys()
    assert len(expected) == 513
    state = TASEDNet().state_dict()
    got = [(k, "x".join(map(str, v.shape)) or "scalar") for k, v in state.items()]
    assert got == expected
    assert sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked")) + 0 > 21_000_000


def test_forward_maps_a_window_to_one_map_in_unit_interval(tiny_model):
    x = torch.rand(2, 3, 32, 32, 64) * 2 - 1
    with torch.inference_mode():
        y = tiny_model(x)
    assert y.shape == (2, 32, 64)
    assert float(y.min()) >= 0 and float(y.max()) <= 1 and float(y.std()) > 0.05
