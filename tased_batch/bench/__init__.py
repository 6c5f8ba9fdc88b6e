"""Benchmarks users run on their own machines: ``tased-batch bench`` (:mod:`.bench`: model and
pipeline frames/s, precisions) and the decode feed's throughput (:mod:`.feed_bench`)."""
