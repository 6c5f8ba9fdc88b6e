"""``evaluate`` on a small synthetic DHF1K-style tree, through the API and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tased_batch.analysis import metrics as M
from tased_batch.analysis.evaluate import evaluate, open_predictions
from tased_batch.core.errors import SourceError, StoreError

H, W = 36, 64
N = 6


def _blob(t: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    cy, cx = 8 + 3 * t, 10 + 8 * t
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)


def _gt_frame(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous map (uint8) and binary fixations (0/255) for frame t of every video."""
    smap = (255 * _blob(t)).astype(np.uint8)
    fix = np.zeros((H, W), np.uint8)
    cy, cx = 8 + 3 * t, 10 + 8 * t
    fix[[cy, cy + 1, cy - 2, 30], [cx, cx - 1, cx + 2, 5]] = 255  # three near the blob, one stray
    return smap, fix


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def dhf1k(tmp_path) -> Path:
    """GT for videos 001, 002, 003 (N frames each, 1-based names)."""
    root = tmp_path / "gt"
    for video in ("001", "002", "003"):
        for t in range(N):
            smap, fix = _gt_frame(t)
            _png(root / video / "maps" / f"{t + 1:04d}.png", smap)
            _png(root / video / "fixation" / f"{t + 1:04d}.png", fix)
    (root / "README.txt").write_text("not a video")
    return root


@pytest.fixture
def png_predictions(tmp_path) -> Path:
    """001: the GT maps at half size, one frame missing; 002: a constant map; 003: none."""
    root = tmp_path / "pred"
    for t in range(N):
        if t != 3:
            half = np.asarray(Image.fromarray(_gt_frame(t)[0]).resize((W // 2, H // 2), Image.BILINEAR))
            _png(root / "001" / f"{t + 1:04d}.png", half)
        _png(root / "002" / f"{t + 1:04d}.png", np.full((H // 2, W // 2), 128, np.uint8))
    return root


def test_evaluate_png_tree(dhf1k, png_predictions):
    report = evaluate(str(png_predictions), str(dhf1k), n_splits=20)
    rows = {v.video_id: v for v in report.videos}
    assert set(rows) == {"001", "002", "003"}

    good = rows["001"]
    assert (good.status, good.frames, good.missing_frames) == ("ok", N - 1, 1)
    # Scores recomputed by hand from the same files, frame by frame (s-AUC aside).
    frames = [t for t in range(N) if t != 3]
    preds = np.stack([np.asarray(Image.open(png_predictions / "001" / f"{t + 1:04d}.png")) for t in frames])
    gts = np.stack([_gt_frame(t)[0] for t in frames])
    fixes = np.stack([_gt_frame(t)[1] for t in frames])
    assert good.scores["CC"] == pytest.approx(np.mean(M.cc(preds, gts)))
    assert good.scores["NSS"] == pytest.approx(np.mean(M.nss(preds, fixes)))
    assert good.scores["KLD"] == pytest.approx(np.mean(M.kld(preds, gts)))
    assert good.scores["CC"] > 0.95 and good.scores["SIM"] > 0.8 and good.scores["AUC-J"] > 0.8
    assert good.scores["s-AUC"] > 0.6

    flat = rows["002"]
    assert flat.status == "ok" and flat.frames == N
    assert flat.scores["NSS"] == 0.0 and flat.scores["CC"] == 0.0
    assert flat.scores["AUC-J"] == pytest.approx(0.5) and flat.scores["s-AUC"] == pytest.approx(0.5)

    assert rows["003"].status == "no-prediction" and math.isnan(rows["003"].scores["NSS"])
    # The mean is over scored videos, each counted once.
    assert report.mean["CC"] == pytest.approx((good.scores["CC"] + 0.0) / 2)


def test_evaluate_results_store(dhf1k, tmp_path):
    """Store frame indices are 0-based: index i is scored against GT file i + 1."""
    from tased_batch.core.records import VideoResult
    from tased_batch.stores import open_shard_writer

    store = str(tmp_path / "run")
    writer = open_shard_writer(
        store,
        "s0",
        format="zarr" if _has_zarr() else "parquet",
        store_size=(H, W),
        model_size=(H, W),
        run_info={"config_fingerprint": "test", "weights": {"sha256": "0" * 64, "kind": "random", "uri": "test"}},
    )
    frames = np.arange(0, N, 2)  # sampled maps (--every 2): GT frames 1, 3, 5
    writer.write(
        VideoResult(
            video_id="001",
            source="001.mp4",
            n_frames=N,
            fps=30.0,
            width=W,
            height=H,
            frame_indices=frames,
            timestamps=frames / 30.0,
            maps=np.stack([_gt_frame(int(t))[0] for t in frames]),
        )
    )
    writer.write(VideoResult.failed("002", "002.mp4", "decode-error", "broken"))
    writer.commit()

    report = evaluate(store, str(dhf1k), n_splits=10)
    rows = {v.video_id: v for v in report.videos}
    assert (rows["001"].status, rows["001"].frames, rows["001"].missing_frames) == ("ok", 3, 3)
    assert rows["001"].scores["CC"] == pytest.approx(1.0)
    assert abs(rows["001"].scores["KLD"]) < 1e-9
    assert rows["002"].status == "failed" and rows["003"].status == "no-prediction"
    assert report.settings["predictions_kind"] == "results-store"


def _has_zarr() -> bool:
    try:
        import zarr  # noqa: F401
    except ImportError:
        return False
    return True


def test_evaluate_is_reproducible_and_seeded(dhf1k, png_predictions):
    a = evaluate(str(png_predictions), str(dhf1k), n_splits=10, seed=1)
    b = evaluate(str(png_predictions), str(dhf1k), n_splits=10, seed=1)
    assert a.videos[0].scores == b.videos[0].scores


def test_cli_writes_table_csv_json(dhf1k, png_predictions, tmp_path):
    import typer
    from typer.testing import CliRunner

    from tased_batch.cli import evaluate as evaluate_cli

    app = typer.Typer()
    app.callback()(lambda: None)  # keep "evaluate" a sub-command, as in the real app
    evaluate_cli.register(app)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app, ["evaluate", str(png_predictions), str(dhf1k), "--out", str(out), "--splits", "10"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "mean (2 videos)" in result.output and "no-prediction" in result.output
    with (out / "evaluation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["video_id"] for r in rows] == ["001", "002", "003", "mean"]
    assert float(rows[1]["NSS"]) == 0.0
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["settings"]["s_auc"]["n_splits"] == 10
    assert doc["videos"][2]["NSS"] is None
    assert doc["mean"]["CC"] == pytest.approx(float(rows[3]["CC"]))


def test_bad_inputs_say_what_to_do(tmp_path, dhf1k):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="neither a results store nor a PNG tree"):
        open_predictions(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="DHF1K-style"):
        evaluate(str(dhf1k), str(tmp_path / "empty"))


def test_evaluate_on_object_storage(dhf1k, png_predictions, s3):
    """Both trees on S3 (a local moto endpoint): same scores as on disk."""
    bucket = s3["bucket"]
    s3["fs"].put(str(dhf1k), f"{bucket}/gt", recursive=True)
    s3["fs"].put(str(png_predictions), f"{bucket}/pred", recursive=True)
    remote = evaluate(f"s3://{bucket}/pred", f"s3://{bucket}/gt", n_splits=10)
    local = evaluate(str(png_predictions), str(dhf1k), n_splits=10)
    assert [(v.video_id, v.status, v.frames) for v in remote.videos] == [
        (v.video_id, v.status, v.frames) for v in local.videos
    ]
    for r, loc in zip(remote.videos, local.videos):
        assert r.scores == pytest.approx(loc.scores, nan_ok=True)


def test_dhf1k_video_numbers_match_annotation_folders():
    from tased_batch.analysis.evaluate import match_ids

    # DHF1K: videos 001.AVI..., annotations 0001/...; exact ids win, ambiguous numbers don't match.
    assert match_ids(["0001", "0002", "abc", "0003"], ["001", "0002", "abc", "3", "03"]) == {
        "0001": "001",
        "0002": "0002",
        "abc": "abc",
    }


def test_shuffle_negatives_come_from_other_videos(tmp_path):
    from tased_batch.analysis.evaluate import GroundTruth, ShufflePool

    def write(root: Path, video: str, spot: tuple[int, int]) -> None:
        for t in range(3):  # one fixation per frame, moving diagonally
            fix = np.zeros((H, W), np.uint8)
            fix[spot[0] + t, spot[1] - t] = 255
            _png(root / video / "maps" / f"{t + 1:04d}.png", fix)
            _png(root / video / "fixation" / f"{t + 1:04d}.png", fix)

    write(tmp_path / "two", "a", (2, 3))
    write(tmp_path / "two", "b", (30, 60))
    gt = GroundTruth(str(tmp_path / "two"))
    gt.load_fixations()
    pool = ShufflePool(gt, seed=0)
    other = pool.other_map("a", 1, (H, W), pool.rng("a", 1))
    assert sorted(zip(*np.nonzero(other))) == [(30, 60), (31, 59), (32, 58)]  # all of b's, none of a's
    small = pool.other_map("b", 2, (H // 2, W // 2), pool.rng("b", 2))  # a's, rescaled to a half-size frame
    assert sorted(zip(*np.nonzero(small))) == [(1, 1), (2, 0)]

    write(tmp_path / "one", "a", (2, 3))
    alone = GroundTruth(str(tmp_path / "one"))
    alone.load_fixations()
    pool = ShufflePool(alone, seed=0)
    other = pool.other_map("a", 1, (H, W), pool.rng("a", 1))
    assert sorted(zip(*np.nonzero(other))) == [(3, 2), (4, 1)]  # the video's other frames only
