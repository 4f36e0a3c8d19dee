"""Training a Very Deep VAE, and what works on trained models: evaluation and bulk jobs.

    python -m model.training.train --data mnist --preset mnist --out runs/mnist
    python -m model.training.evaluation.evaluate weights/mnist --data mnist --split test

Here: what training and its neighbours share (data, distributed set-up, progress and logs) and
training itself (config, objectives, ema, trainer, train, tensorboard_log). `evaluation/` scores
trained models (bits per dim, sample quality, ablations, comparisons); `bulk/` runs sharded,
resumable jobs over many images (samples, dataset encodings). Training uses evaluation (test
bits/dim, sample grids); neither subpackage imports training. Imports the network (`model`);
nothing in `model` or `service` imports this package.
"""
