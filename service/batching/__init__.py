"""Batching: per-image work items in, one model pass per batch on the device's thread, per-image
results out. It knows nothing of HTTP; the API hands it typed items through its scheduler."""
