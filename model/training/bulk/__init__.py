"""Bulk jobs over many images, run by one process or by torchrun across devices and nodes: the
sharded, resumable output folder (shards), samples (generate) and a dataset's per-image encodings
(encode_dataset)."""
