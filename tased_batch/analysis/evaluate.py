"""Score predicted saliency maps against a DHF1K-style ground-truth tree.

Ground truth: ``<root>/<video>/maps/NNNN.png`` (continuous maps, for CC, SIM, KLD) and
``<root>/<video>/fixation/NNNN.png`` (binary fixations, for NSS, AUC-Judd, s-AUC), with
1-based frame numbers. Predictions: a results store (anything ``open_results`` reads) or a
PNG tree ``<root>/<video>/NNNN.png`` (8-bit grey, 1-based: the layout of the released
TASED-Net script). A prediction is matched to the ground-truth frame with the same number
(store frame index + 1); only frames present in both are scored.

Scores are averaged over a video's frames, then over videos (each video counts once).
Both trees may be any fsspec URI.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import fsspec
import numpy as np
from PIL import Image

from tased_batch.analysis import metrics
from tased_batch.core.errors import SourceError, StoreError

METRICS: tuple[str, ...] = ("NSS", "CC", "SIM", "AUC-J", "s-AUC", "KLD")
"""Column names, in the order DHF1K papers report them (KLD: lower is better)."""

SHUFFLE_FRAMES = 10
"""Other frames whose fixations form one frame's s-AUC negatives (Borji's M = 10)."""

CHUNK = 16
"""Frames scored together: enough to vectorise, small enough to keep memory flat."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is ``"fixations"`` (reading) or ``"scoring"``."""


def _frame_number(path: str) -> int | None:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def _png_numbers(fs: fsspec.AbstractFileSystem, folder: str) -> dict[int, str]:
    """Frame number -> path for the ``NNNN.png`` files directly in ``folder``."""
    found: dict[int, str] = {}
    for path in fs.ls(folder, detail=False):
        if path.lower().endswith(".png"):
            number = _frame_number(path)
            if number is not None:
                found[number] = path
    return found


def _read_grey(fs: fsspec.AbstractFileSystem, path: str) -> np.ndarray:
    """An image file as 8-bit grey (colour ground truth is converted with PIL's luma)."""
    with fs.open(path, "rb") as f:
        img = Image.open(io.BytesIO(f.read()))
        return np.asarray(img if img.mode == "L" else img.convert("L"))


# ---------------------------------------------------------------- predictions


class Predictions(Protocol):
    """Predicted maps by video and 1-based frame number, whatever they are stored in."""

    uri: str
    kind: str

    def video_ids(self) -> list[str]: ...

    def status(self, video_id: str) -> str:
        """``ok``, ``failed`` (the run recorded a failure) or ``missing``."""
        ...

    def numbers(self, video_id: str) -> np.ndarray:
        """Sorted 1-based frame numbers that have a map."""
        ...

    def read(self, video_id: str, numbers: Sequence[int]) -> np.ndarray:
        """uint8 maps (T x H x W) for those frame numbers, in that order."""
        ...


class PngTreePredictions:
    """``<root>/<video>/NNNN.png``: the released TASED-Net script's output layout."""

    kind = "png-tree"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._fs, self._root = fsspec.core.url_to_fs(uri)
        self._files: dict[str, dict[int, str]] = {}
        for entry in self._fs.ls(self._root, detail=True):
            if entry["type"] == "directory":
                pngs = _png_numbers(self._fs, entry["name"])
                if pngs:
                    self._files[entry["name"].rstrip("/").rsplit("/", 1)[-1]] = pngs

    @classmethod
    def open(cls, uri: str) -> PngTreePredictions | None:
        """The tree at ``uri``, or None when no sub-folder of it holds ``NNNN.png`` files."""
        try:
            tree = cls(uri)
        except (FileNotFoundError, NotADirectoryError, OSError):
            return None
        return tree if tree._files else None

    def video_ids(self) -> list[str]:
        return sorted(self._files)

    def status(self, video_id: str) -> str:
        return "ok" if video_id in self._files else "missing"

    def numbers(self, video_id: str) -> np.ndarray:
        return np.array(sorted(self._files.get(video_id, {})), dtype=np.int64)

    def read(self, video_id: str, numbers: Sequence[int]) -> np.ndarray:
        files = self._files[video_id]
        return np.stack([_read_grey(self._fs, files[int(n)]) for n in numbers])


class StorePredictions:
    """A results store via ``open_results``; maps are read at stored size (resized later, once)."""

    kind = "results-store"

    def __init__(self, uri: str) -> None:
        from tased_batch.stores.reader import open_results

        self.uri = uri
        self._store = open_results(uri)
        table = self._store.videos().to_pydict()
        self._status = dict(zip(table["video_id"], table["status"]))
        self._cached: tuple[str, np.ndarray, np.ndarray] | None = None

    def video_ids(self) -> list[str]:
        return sorted(self._status)

    def status(self, video_id: str) -> str:
        return "missing" if video_id not in self._status else ("ok" if self._status[video_id] == "ok" else "failed")

    def _load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        # One video's maps at a time: stores hand out whole videos, callers go video by video.
        if self._cached is None or self._cached[0] != video_id:
            numbers = np.asarray(self._store.frame_indices(video_id), dtype=np.int64) + 1
            maps = np.asarray(self._store.maps(video_id, size="stored"))
            self._cached = (video_id, numbers, maps)
        return self._cached[1], self._cached[2]

    def numbers(self, video_id: str) -> np.ndarray:
        if self.status(video_id) != "ok":
            return np.zeros(0, np.int64)
        return np.unique(self._load(video_id)[0])

    def read(self, video_id: str, numbers: Sequence[int]) -> np.ndarray:
        stored, maps = self._load(video_id)
        position = {int(n): i for i, n in enumerate(stored)}
        return maps[[position[int(n)] for n in numbers]]


def open_predictions(uri: str) -> Predictions:
    """A results store if ``open_results`` finds committed videos at ``uri``, else a PNG tree.

    Raises :class:`StoreError` when it is neither, with the reason the store reader gave.
    """
    why = ""
    try:
        store = StorePredictions(uri)
        if store.video_ids():
            return store
        why = ": no committed results there"
    except (StoreError, OSError, ValueError) as exc:
        why = f": {exc}"
    tree = PngTreePredictions.open(uri)
    if tree is not None:
        return tree
    raise StoreError(
        f"{uri}: neither a results store nor a PNG tree{why}",
        "give a results store (the output URI of a tased-batch run) or a folder of <video>/NNNN.png maps",
    )


# ---------------------------------------------------------------- ground truth


@dataclass
class GroundTruthVideo:
    """One DHF1K-style video: map and fixation files by frame number, fixations in memory."""

    video_id: str
    maps: dict[int, str]
    fixation_files: dict[int, str]
    fixations: dict[int, tuple[tuple[int, int], np.ndarray, np.ndarray]] = field(default_factory=dict)
    """frame number -> ((H, W), row indices, column indices) of fixated pixels."""

    @functools.cached_property
    def numbers(self) -> list[int]:
        """Frames with both a continuous map and a fixation map."""
        return sorted(set(self.maps) & set(self.fixation_files))

    def fixation_map(self, number: int) -> np.ndarray:
        (h, w), rows, cols = self.fixations[number]
        out = np.zeros((h, w), bool)
        out[rows, cols] = True
        return out


class GroundTruth:
    """A DHF1K-style tree: ``<root>/<video>/maps/NNNN.png`` and ``<video>/fixation/NNNN.png``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, root = fsspec.core.url_to_fs(uri)
        try:
            entries = self.fs.ls(root, detail=True)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise SourceError(f"{uri}: ground-truth folder not found", "give the root of a DHF1K-style tree") from exc
        self.videos: dict[str, GroundTruthVideo] = {}
        for entry in sorted(entries, key=lambda e: e["name"]):
            if entry["type"] != "directory":
                continue
            name = entry["name"].rstrip("/")
            sub = {p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(name, detail=False)}
            if {"maps", "fixation"} <= sub:
                self.videos[name.rsplit("/", 1)[-1]] = GroundTruthVideo(
                    video_id=name.rsplit("/", 1)[-1],
                    maps=_png_numbers(self.fs, f"{name}/maps"),
                    fixation_files=_png_numbers(self.fs, f"{name}/fixation"),
                )
        if not self.videos:
            raise SourceError(
                f"{uri}: no <video>/maps and <video>/fixation folders found",
                "GT must be a DHF1K-style tree: <video>/maps/0001.png and <video>/fixation/0001.png",
            )

    def load_fixations(self, progress: Progress | None = None) -> None:
        """Read every fixation map once: they are sparse, and s-AUC needs other frames' ones."""
        total = sum(len(v.numbers) for v in self.videos.values())
        done = 0
        for video in self.videos.values():
            for number in video.numbers:
                fix = _read_grey(self.fs, video.fixation_files[number]) > 0
                rows, cols = np.nonzero(fix)
                video.fixations[number] = (fix.shape, rows.astype(np.int32), cols.astype(np.int32))
                done += 1
                if progress:
                    progress("fixations", done, total)


class ShufflePool:
    """Draws the "other" fixation map of s-AUC for a frame, reproducibly.

    For frame ``n`` of video ``v``: ``SHUFFLE_FRAMES`` frames drawn without replacement
    from the other videos of the ground truth (from ``v``'s other frames when it is the only
    video), their fixations rescaled to the frame's size and united. The generator is seeded
    with (seed, video id, frame number), so a score does not depend on evaluation order.
    """

    def __init__(self, gt: GroundTruth, seed: int) -> None:
        self.seed = seed
        self._frames: list[tuple[str, int]] = [(v.video_id, n) for v in gt.videos.values() for n in v.numbers]
        self._videos = gt.videos
        self._range: dict[str, tuple[int, int]] = {}
        start = 0
        for v in gt.videos.values():
            self._range[v.video_id] = (start, start + len(v.numbers))
            start += len(v.numbers)

    def rng(self, video_id: str, number: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(video_id.encode()), number])

    def other_map(self, video_id: str, number: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        lo, hi = self._range[video_id]
        if hi - lo < len(self._frames):  # other videos exist: skip this video's [lo, hi)
            skip_from, skip = lo, hi - lo
        else:  # the only video: skip just this frame
            skip_from, skip = lo + self._videos[video_id].numbers.index(number), 1
        size = len(self._frames) - skip
        picks = rng.choice(size, size=min(SHUFFLE_FRAMES, size), replace=False) if size > 0 else np.zeros(0, int)
        picks = np.where(picks >= skip_from, picks + skip, picks)
        out = np.zeros(shape, bool)
        for index in picks:
            vid, n = self._frames[int(index)]
            (h, w), rows, cols = self._videos[vid].fixations[n]
            out[(rows.astype(np.int64) * shape[0]) // h, (cols.astype(np.int64) * shape[1]) // w] = True
        return out


# ---------------------------------------------------------------- evaluation


@dataclass
class VideoScores:
    """One row of the report: a video's mean scores over its scored frames."""

    video_id: str
    status: str  # ok | no-prediction | failed | no-common-frames
    frames: int = 0
    missing_frames: int = 0
    scores: dict[str, float] = field(default_factory=lambda: {m: math.nan for m in METRICS})

    def as_row(self) -> dict[str, object]:
        return {
            "video_id": self.video_id,
            "status": self.status,
            "frames": self.frames,
            "missing_frames": self.missing_frames,
            **self.scores,
        }


@dataclass
class EvaluationReport:
    """Per-video and mean scores, with the settings that produced them."""

    predictions: str
    ground_truth: str
    videos: list[VideoScores]
    settings: dict[str, object]

    @property
    def mean(self) -> dict[str, float]:
        """Mean over scored videos of their per-video means (NaN videos/frames skipped)."""
        ok = [v for v in self.videos if v.status == "ok"]
        out: dict[str, float] = {}
        for m in METRICS:
            values = np.array([v.scores[m] for v in ok], dtype=np.float64)
            values = values[~np.isnan(values)]
            out[m] = float(values.mean()) if values.size else math.nan
        return out

    def write_csv(self, path: str | Path) -> Path:
        """One row per video plus a final ``mean`` row."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["video_id", "status", "frames", "missing_frames", *METRICS])
            writer.writeheader()
            for video in self.videos:
                writer.writerow(video.as_row())
            scored = [v for v in self.videos if v.status == "ok"]
            writer.writerow(
                {
                    "video_id": "mean",
                    "status": f"{len(scored)} videos",
                    "frames": sum(v.frames for v in scored),
                    "missing_frames": sum(v.missing_frames for v in self.videos),
                    **self.mean,
                }
            )
        return path

    def write_json(self, path: str | Path) -> Path:
        """Settings, mean and per-video rows; NaN is written as null."""

        def clean(value: object) -> object:
            return None if isinstance(value, float) and math.isnan(value) else value

        doc = {
            "predictions": self.predictions,
            "ground_truth": self.ground_truth,
            "settings": self.settings,
            "mean": {k: clean(v) for k, v in self.mean.items()},
            "videos": [{k: clean(v) for k, v in video.as_row().items()} for video in self.videos],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return path


def match_ids(gt_ids: Sequence[str], pred_ids: Sequence[str]) -> dict[str, str]:
    """GT video id -> prediction video id: the same id, else the same number.

    DHF1K names its videos ``001.AVI``... but its annotation folders ``0001``..., so an id
    made only of digits also matches one with the same integer value (if just one does).
    """
    exact = set(pred_ids)
    by_number: dict[int, list[str]] = {}
    for pid in pred_ids:
        if pid.isdigit():
            by_number.setdefault(int(pid), []).append(pid)
    out: dict[str, str] = {}
    for gid in gt_ids:
        if gid in exact:
            out[gid] = gid
        elif gid.isdigit() and len(by_number.get(int(gid), [])) == 1:
            out[gid] = by_number[int(gid)][0]
    return out


def _score_video(
    video: GroundTruthVideo,
    pred_id: str | None,
    preds: Predictions,
    gt: GroundTruth,
    pool: ShufflePool,
    n_splits: int,
    on_frames: Callable[[int], None],
) -> VideoScores:
    status = preds.status(pred_id) if pred_id is not None else "missing"
    gt_numbers = video.numbers
    if pred_id is None or status != "ok":
        return VideoScores(
            video.video_id, "no-prediction" if status == "missing" else "failed", missing_frames=len(gt_numbers)
        )
    have = set(preds.numbers(pred_id).tolist())
    numbers = [n for n in gt_numbers if n in have]
    result = VideoScores(video.video_id, "ok", frames=len(numbers), missing_frames=len(gt_numbers) - len(numbers))
    if not numbers:
        result.status = "no-common-frames"
        return result
    per_frame: dict[str, list[float]] = {m: [] for m in METRICS}
    for start in range(0, len(numbers), CHUNK):
        chunk = numbers[start : start + CHUNK]
        gt_maps = np.stack([_read_grey(gt.fs, video.maps[n]) for n in chunk])
        fix = np.stack([video.fixation_map(n) for n in chunk])
        if fix.shape[1:] != gt_maps.shape[1:]:
            raise SourceError(
                f"{gt.uri}: {video.video_id} has fixation maps of size {fix.shape[1:]} but saliency maps of "
                f"size {gt_maps.shape[1:]}",
                "maps/ and fixation/ of a video must have the same size",
            )
        pred = metrics.resize_to(preds.read(pred_id, chunk), gt_maps.shape[1:])
        per_frame["NSS"].extend(np.atleast_1d(metrics.nss(pred, fix)))
        per_frame["CC"].extend(np.atleast_1d(metrics.cc(pred, gt_maps)))
        per_frame["SIM"].extend(np.atleast_1d(metrics.sim(pred, gt_maps)))
        per_frame["KLD"].extend(np.atleast_1d(metrics.kld(pred, gt_maps)))
        per_frame["AUC-J"].extend(np.atleast_1d(metrics.auc_judd(pred, fix)))
        for i, n in enumerate(chunk):
            rng = pool.rng(video.video_id, n)
            other = pool.other_map(video.video_id, n, fix.shape[1:], rng)
            per_frame["s-AUC"].append(metrics.auc_shuffled(pred[i], fix[i], other, n_splits=n_splits, seed=rng))
        on_frames(len(chunk))
    for m in METRICS:
        values = np.asarray(per_frame[m], dtype=np.float64)
        values = values[~np.isnan(values)]
        result.scores[m] = float(values.mean()) if values.size else math.nan
    return result


def evaluate(
    predictions: str,
    ground_truth: str,
    *,
    seed: int = 0,
    n_splits: int = 100,
    progress: Progress | None = None,
) -> EvaluationReport:
    """Score every ground-truth video against its predictions (see the module docstring).

    ``seed`` fixes s-AUC's negatives; ``n_splits`` is s-AUC's number of draws (100 as in
    ``AUC_shuffled.m``). Videos without predictions are reported, not scored.
    """
    gt = GroundTruth(ground_truth)
    preds = open_predictions(predictions)
    gt.load_fixations(progress)
    pool = ShufflePool(gt, seed)
    total = sum(len(v.numbers) for v in gt.videos.values())
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("scoring", done, total)

    matched = match_ids(list(gt.videos), preds.video_ids())
    rows = []
    for video in gt.videos.values():
        before = done
        rows.append(_score_video(video, matched.get(video.video_id), preds, gt, pool, n_splits, advance))
        advance(len(video.numbers) - (done - before))  # frames not scored still count as handled
    settings = {
        "metrics": list(METRICS),
        "resize": "prediction resized to GT size: bicubic (PIL, a=-0.5, antialiased when shrinking)",
        "std": "sample (ddof=1)",
        "kld_eps": metrics.EPS,
        "auc_judd": "tie-aware thresholds at fixation values, no jitter",
        "s_auc": {"seed": seed, "n_splits": n_splits, "step": 0.1, "other_frames": SHUFFLE_FRAMES},
        "average": "frames within a video, then videos",
        "predictions_kind": preds.kind,
    }
    return EvaluationReport(predictions, ground_truth, rows, settings)
