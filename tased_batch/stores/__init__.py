"""Result stores: Parquet, Zarr and PNG writers, commit records, and the reader."""
