"""The benchmarks behind `vdvae bench`; the server never imports them.

    vdvae bench model     the model's own sampling throughput in this process (model.py)
    vdvae bench service   closed-loop load on a running or spawned service (service.py, loadgen.py)
    vdvae bench stress    the service's latency while clients loop the worst bodies (stress.py, hostile.py)

`python -m service.bench ARGS` is `vdvae bench service ARGS`.
"""
