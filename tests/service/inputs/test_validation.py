"""The request side of the service (bodies, validation, items) imports no torch: the model's code is
reached only through a served model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_bodies_validation_and_items_import_without_torch() -> None:
    code = (
        "import sys\n"
        "from service.api.images.bodies import SampleRequest\n"
        "from service.batching.items import SampleItem\n"
        "from service.inputs import payloads, uploads, validation\n"
        "req = SampleRequest(n=2, seed=5, temperature=0.5)\n"
        "assert validation.seeds_for(req.seed, req.n) == [5, 6]\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
