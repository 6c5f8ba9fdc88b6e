"""Package discovery only (the metadata is in pyproject.toml): every package under tased_batch/,
and the CLI's folder cli/ installed as tased_batch.cli, found automatically so that none can be
left out of the wheel. pyproject.toml alone cannot map a found top-level folder under another package."""

from setuptools import find_packages, setup

cli = ["tased_batch.cli", *(f"tased_batch.cli.{p}" for p in find_packages("cli"))]
setup(
    packages=[*find_packages(include=["tased_batch", "tased_batch.*"]), *cli],
    package_dir={"tased_batch.cli": "cli"},
)
