"""The docker/ tests use the service tests' model folders and in-process server."""

from ..service.conftest import REPO, model_dir, server  # noqa: F401  (fixtures, shared by name)
