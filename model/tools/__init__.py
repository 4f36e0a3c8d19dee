"""Command-line tools around a model that are neither training nor serving:

python -m model.tools.convert FILE --preset cifar10 --out weights/cifar10   # import an official checkpoint
python -m model.tools.bench --weights weights/mnist --batch-sizes 1,8,32     # sampling throughput
"""
