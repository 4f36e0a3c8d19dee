"""Command-line tools around a model that are neither training nor serving:

python -m model.tools.convert FILE --preset cifar10 --out weights/cifar10   # import an official checkpoint
python -m model.tools.stages weights/mnist --out stages.png                  # samples forming, stage by stage

The sampling-throughput benchmark is `vdvae bench model` (service/bench/model.py).
"""
