"""The tased-batch command line (installed as ``tased_batch.cli``): parsing and printing only."""
