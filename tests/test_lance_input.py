"""A Lance clip table as input: URL column or inline mp4 bytes, streamed, ids from --id-col;
a clip read out of the table gives the same maps as the same file on disk."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import torch

import tased_batch.run.shards as shards
from tased_batch import open_results
from tased_batch.config import RunConfig
from tased_batch.core.errors import SourceError
from tased_batch.decode.sources import VideoSource, iter_sources
from tased_batch.model.weights import WeightsInfo

from conftest import SMALL

lance = pytest.importorskip("lance")


def test_url_and_bytes_columns_list_every_clip_with_its_id(tmp_path, make_video):
    a, b = make_video("a.mp4", n_frames=6), make_video("sub/b.mp4", n_frames=5, seed=1)
    uri = str(tmp_path / "clips.lance")
    lance.write_dataset(
        pa.table({"clip": ["c-1", "c-2"], "url": ["a.mp4", str(b)], "mp4": [a.read_bytes(), b.read_bytes()]}), uri
    )
    by_url = list(iter_sources(uri, id_col="clip"))
    assert [(s.video_id, s.uri) for s in by_url] == [("c-1", str(a)), ("c-2", str(b))]  # relative to the table
    by_bytes = list(iter_sources(uri, id_col="clip", bytes_col="mp4"))
    assert [s.video_id for s in by_bytes] == ["c-1", "c-2"] and all(s.uri == uri for s in by_bytes)
    assert len({s.member for s in by_bytes}) == 2
    with pytest.raises(SourceError, match="no column 'video'"):
        list(iter_sources(uri, bytes_col="video"))
    with pytest.raises(SourceError, match="not one"):
        list(iter_sources(str(a), bytes_col="mp4"))


def test_a_clip_stored_in_the_table_gives_the_same_maps_as_its_file(tmp_path, make_video, tiny_model):
    video = make_video("a.mp4", n_frames=10, seed=4)
    uri = str(tmp_path / "clips.lance")
    lance.write_dataset(pa.table({"clip": ["x", "a"], "mp4": [b"", video.read_bytes()]}), uri)
    (empty, inline) = list(iter_sources(uri, id_col="clip", bytes_col="mp4"))
    buffer = io.BytesIO()
    torch.save(tiny_model.state_dict(), buffer)
    info = WeightsInfo(kind="custom", uri="tiny", sha256="0" * 64)
    config = RunConfig(
        input=uri, output=str(tmp_path / "out"), size=f"{SMALL[0]}x{SMALL[1]}", weights="tiny"
    ).validate()
    processor = shards.ShardProcessor(config, buffer.getvalue(), info, shards.run_info(config, info, "fp"), threads=1)
    record = processor.process("000000", [empty, inline, VideoSource("file", str(video))]).record
    assert record.n_ok == 2 and record.failures[0].video_id == "x" and "empty" in (record.failures[0].error or "")
    res = open_results(config.output)
    np.testing.assert_array_equal(res.maps("a"), res.maps("file"))
    assert res.maps("a").shape[0] == 10
