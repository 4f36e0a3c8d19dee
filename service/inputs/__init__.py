"""Inputs: a request's body -> checked per-image work items (its bytes parsed, its fields checked
against the model and the settings). Nothing here imports torch."""
