"""model.tools.stages: a picture of samples forming, one column per resolution."""

from __future__ import annotations

import numpy as np
from PIL import Image

from model import HParams
from model.checkpoint import save_model_folder
from model.tools.stages import main
from model.topdown import resolution_stops
from tests.factories import perturbed


def test_one_row_per_label_one_column_per_resolution(tmp_path, capsys) -> None:
    hp = HParams.preset("tiny").replace(num_classes=3, image_channels=1, dataset="mnist", num_mixtures=2)
    save_model_folder(perturbed(hp), tmp_path / "m", provenance={"weights": "random"})
    out = tmp_path / "stages.png"
    assert (
        main(
            [str(tmp_path / "m"), "--labels", "0,1,2", "--guidance", "1,0", "--out", str(out), "--scale", "2"]
        )
        == 0
    )
    columns = len(resolution_stops(hp.layer_resolutions))
    image = np.asarray(Image.open(out))
    assert image.shape == (2 * (3 * 34 + 2), 2 * (columns * 34 + 2))  # 32x32 images, 2-pixel borders
    assert "columns 1x1 (1 layer)" in capsys.readouterr().out
    assert main([str(tmp_path / "missing"), "--out", str(out)]) == 2
