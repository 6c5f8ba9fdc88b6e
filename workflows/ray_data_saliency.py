"""Saliency maps as one step of your own Ray Data pipeline (the `tased_batch.ray_data` plugin).

    python workflows/ray_data_saliency.py "s3://my-bucket/video2dataset/*.tar" \
        s3://my-bucket/saliency/captions-ray/ --actors 8 --output-fps 2

Reads WebDataset shards (``KEY.mp4`` + ``KEY.txt``), computes the maps on GPU actors that
each load the model once, keeps each caption next to its maps, and writes Parquet. Unlike
`tased-batch run` there are no commit records and no resume: use this when the maps feed
straight into further steps of the same pipeline. Credentials: the standard AWS chain.
"""

from __future__ import annotations

import argparse
from typing import Any

import ray
from ray.data import ActorPoolStrategy, Dataset

from tased_batch.options import OPTIONS, PREDICTOR_KEYS
from tased_batch.ray_data import SaliencyPredictor


def saliency(ds: Dataset, *, actors: int, gpus: float, rows_per_batch: int = 2, **options: Any) -> Dataset:
    """``ds`` rows of WebDataset samples (``__key__``, ``mp4``, ``txt``) -> one row of maps per sample.

    ``options`` are `tased-batch run`'s options the plugin takes (weights, size, output_fps, ...).
    """
    return ds.map_batches(
        SaliencyPredictor,
        fn_constructor_kwargs={"bytes_col": "mp4", "id_col": "__key__", "keep_cols": ["txt"], **options},
        batch_size=rows_per_batch,
        num_gpus=gpus,
        compute=ActorPoolStrategy(min_size=1, max_size=actors),
    )


def shard_paths(pattern: str) -> list[str]:
    """URIs of the shards a glob or brace range names (Ray's readers take plain paths)."""
    import fsspec

    from tased_batch.decode.sources import expand_braces

    paths = [f.full_name for p in expand_braces(pattern) for f in fsspec.open_files(p)]
    if not paths:
        raise SystemExit(f"no shards match {pattern}")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", help='WebDataset shards: a glob or a brace range, e.g. "s3://bucket/wds/*.tar"')
    parser.add_argument("output", help="folder for the Parquet files (local or s3://...)")
    parser.add_argument("--actors", type=int, default=1, help="most GPU actors [1]")
    parser.add_argument("--gpus", type=float, default=1.0, help="GPUs per actor [1]")
    for name in PREDICTOR_KEYS:  # the plugin's options, spelled as `tased-batch run` spells them
        option = OPTIONS[name]
        flags = [option.flag, option.spec.short] if option.spec.short else [option.flag]
        parser.add_argument(
            *flags,
            dest=name,
            help=option.help,
            choices=option.spec.choices,
            metavar=option.spec.metavar,
            action="append" if option.kind is dict else "store",
        )
    parser.set_defaults(output_fps="2")  # this workflow's default: two maps per second
    args = vars(parser.parse_args())
    options = {name: args[name] for name in PREDICTOR_KEYS if args[name] is not None}
    if "storage_options" in options:
        from tased_batch.decode.sources import parse_storage_options

        options["storage_options"] = parse_storage_options(options["storage_options"])
    ray.init()  # joins $RAY_ADDRESS (a cluster, or `ray job submit`), else starts a local Ray
    ds = ray.data.read_webdataset(shard_paths(args["shards"]))
    maps = saliency(ds, actors=args["actors"], gpus=args["gpus"], **options)
    maps.write_parquet(args["output"])


if __name__ == "__main__":
    main()
