"""Planning benchmark: `tased-batch run MANIFEST OUT --dry-run` over a manifest of N videos.

Writes a CSV manifest of N rows (s3:// URIs; nothing is fetched: planning never touches
the videos), then times the dry run in a subprocess and prints its wall time and peak
memory (the child's max RSS). Aim (issue 5): 1,000,000 videos in under 60 s and 2 GB.

    python benchmarks/plan_bench.py --videos 1000000
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.csv"
        with manifest.open("w") as f:
            f.write("url,caption\n")
            for i in range(args.videos):
                f.write(f"s3://archive/videos/{i // 1000:04d}/clip_{i:07d}.mp4,a caption for clip {i}\n")
        command = [
            sys.executable,
            "-m",
            "tased_batch.cli.main",
            "run",
            str(manifest),
            str(Path(tmp) / "out"),
            "--dry-run",
            "--weights",
            "random",
            "--shard-size",
            str(args.shard_size),
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        sys.exit(f"dry run failed ({done.returncode}):\n{done.stderr}")
    print(done.stderr.strip().splitlines()[-1])
    print(f"planned {args.videos:,} videos: {seconds:.1f} s wall, peak RSS {peak_mb:,.0f} MB (aim: < 60 s, < 2048 MB)")


if __name__ == "__main__":
    main()
