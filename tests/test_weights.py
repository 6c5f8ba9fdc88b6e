"""Checkpoints: the released layout loads unchanged, broken files are refused by name."""

import socket
import time

import pytest
import torch
from typer.testing import CliRunner

from tased_batch import load_model
from tased_batch.cli.main import app
from tased_batch.core.errors import WeightsError
from tased_batch.model.network import TASEDNet
from tased_batch.model.weights import check_state_dict, download_released, map_s3d_encoder, weights_info

from conftest import SMALL


def _released_layout(model, drop_batches_tracked=False):
    return {
        f"module.{k}": v.clone()
        for k, v in model.state_dict().items()
        if not (drop_batches_tracked and k.endswith("num_batches_tracked"))
    }


@pytest.mark.parametrize("drop", [False, True])
def test_released_layout_round_trips(tiny_model, tmp_path, drop):
    path = tmp_path / "TASED_updated.pt"
    torch.save(_released_layout(tiny_model, drop), path)
    model, info = load_model(str(path))
    assert not model.training
    assert info.kind == "released"
    assert len(info.sha256) == 64
    assert not hasattr(model, "weights_info")  # provenance travels beside the module, not patched onto it
    x = torch.rand(1, 3, 32, *SMALL) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(model(x), tiny_model(x))


def test_loads_from_s3(tiny_model, tmp_path, s3):
    path = tmp_path / "w.pt"
    torch.save(_released_layout(tiny_model), path)
    s3["fs"].put(str(path), f"{s3['bucket']}/models/w.pt")
    model, info = load_model(f"s3://{s3['bucket']}/models/w.pt", storage_options=s3["storage_options"])
    assert info.kind == "custom" and info.uri == f"s3://{s3['bucket']}/models/w.pt"
    assert torch.equal(model.state_dict()["convtsp4.13.bias"], tiny_model.state_dict()["convtsp4.13.bias"])


def test_broken_checkpoint_is_refused_naming_what_is_wrong(tiny_model, tmp_path):
    state = _released_layout(tiny_model)
    del state["module.base2.0.branch1.1.conv_t.weight"]
    state["module.head.fc.weight"] = torch.zeros(3)
    state["module.convtsp2.0.weight"] = torch.zeros(832, 480, 1, 2, 2)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        load_model(str(path))
    text = str(err.value)
    assert "base2.0.branch1.1.conv_t.weight" in text and "1 missing" in text
    assert "head.fc.weight" in text and "1 unexpected" in text
    assert "convtsp2.0.weight" in text and "mis-shaped" in text


def test_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_model(str(path))
    with pytest.raises(WeightsError, match="not found"):
        load_model(str(tmp_path / "absent.pt"))


def test_missing_released_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TASED_BATCH_CACHE", str(tmp_path))
    with pytest.raises(WeightsError) as err:
        load_model(None)
    assert "weights download" in str(err.value) and "--weights random" in str(err.value)


def test_s3d_encoder_loads_into_encoder_only(tiny_model, tmp_path):
    enc = {}
    stage_offset = {"base1": 0, "base2": 5, "base3": 8, "base4": 14}
    for k, v in tiny_model.state_dict().items():
        stage, n, rest = k.split(".", 2)
        if stage in stage_offset:
            enc[f"module.base.{int(n) + stage_offset[stage]}.{rest}"] = v.clone()
    enc["module.fc.0.weight"] = torch.zeros(400, 1024, 1, 1, 1)
    path = tmp_path / "S3D_kinetics400.pt"
    torch.save(enc, path)
    model, _ = load_model(str(path))
    ref = tiny_model.state_dict()
    got = model.state_dict()
    assert torch.equal(got["base3.4.branch2.1.conv_t.weight"], ref["base3.4.branch2.1.conv_t.weight"])
    assert torch.equal(got["base4.1.branch0.0.bn.running_var"], ref["base4.1.branch0.0.bn.running_var"])
    assert not torch.equal(got["convtsp4.13.bias"], ref["convtsp4.13.bias"])
    assert weights_info(str(path))["kind"] == "S3D encoder"
    mapped = map_s3d_encoder({k[len("module.") :]: v for k, v in enc.items()})
    check_state_dict(mapped, TASEDNet(), encoder_only=True)


def test_random_model_maps_vary_with_input(tmp_path, monkeypatch):
    monkeypatch.setenv("TASED_BATCH_CACHE", str(tmp_path))
    model, info = load_model("random")
    assert info.kind == "random"
    _, again = load_model("random")  # second load comes from the cache and is identical
    assert again.sha256 == info.sha256
    from tased_batch.decode.sample import synthetic_frames

    outs = []
    for seed in (5, 6):
        f = torch.from_numpy(synthetic_frames(32, *SMALL, seed=seed)).permute(3, 0, 1, 2).float() * 2 / 255 - 1
        with torch.inference_mode():
            outs.append(model(f[None])[0])
    assert float(outs[0].std()) > 0.05
    assert float((outs[0] - outs[1]).abs().mean()) > 0.01


def test_weights_info_cli(tiny_weights):
    result = CliRunner().invoke(app, ["weights", "info", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    assert "513" in result.output and "full TASED-Net" in result.output


def test_download_fails_fast_offline(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setenv("TASED_BATCH_CACHE", str(tmp_path))
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match="cannot reach"):
        download_released()
    result = CliRunner().invoke(app, ["weights", "download"])
    assert result.exit_code != 0
    assert "cannot reach" in result.output
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "TASED_updated.pt").exists()
