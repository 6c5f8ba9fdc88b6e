"""Small records and rules that every layer shares: errors and reason codes, video records,
secret scrubbing, sizes, storage-error classification, retry backoff, the version.

Nothing here imports another layer of tased_batch, numpy or torch.
"""
