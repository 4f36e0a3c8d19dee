"""Training a Very Deep VAE: data, objectives, the trainer, evaluation and distributed set-up.

    python -m model.training.train --data mnist --preset mnist --out runs/mnist
    python -m model.training.evaluate weights/mnist --data mnist --split test

Imports the network (`model`); nothing in `model` or `service` imports this package.
"""
