"""Saliency maps inside a Daft dataframe: a column of video URIs in, maps and per-frame summaries out.

``pip install "tased-batch[daft]"``; then::

    python workflows/daft_saliency.py "videos/*.mp4" saliency.parquet --weights random --size 64x96

Each output row is one video: its encoded maps (PNG, as the Parquet store) and the summary store's
per-frame statistics (peak, centre, entropy, ...). Bad videos are rows with ``status == "failed"``.
"""

from __future__ import annotations

import argparse
import glob

import daft

from tased_batch.integrations.daft import SaliencyUDF


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", help="a glob of local video files, or a text file of URIs (one a line)")
    parser.add_argument("out", help="Parquet file to write")
    parser.add_argument("--weights", default="released")
    parser.add_argument("--size", default="224x384")
    parser.add_argument("--output-fps", type=float, default=2.0)
    args = parser.parse_args()
    urls = sorted(glob.glob(args.videos)) if any(c in args.videos for c in "*?[") else open(args.videos).read().split()
    saliency = SaliencyUDF(weights=args.weights, size=args.size, output_fps=args.output_fps)
    df = daft.from_pydict({"url": urls}).with_column("saliency", saliency(daft.col("url")))
    df = df.select(
        "url",
        *[
            daft.col("saliency")[name].alias(name)
            for name in ("video_id", "status", "reason", "maps", "peak_x", "peak_y", "entropy")
        ],
    )
    done = df.collect()  # one pass: the maps are computed once, then written and counted
    done.write_parquet(args.out)
    statuses = done.select("status").to_pydict()["status"]
    ok = statuses.count("ok")
    print(f"{ok} videos done, {len(statuses) - ok} failed -> {args.out}")


if __name__ == "__main__":
    main()
