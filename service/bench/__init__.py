"""The benchmarks behind `vdvae bench` (model, service, stress); the server never imports them.
`python -m service.bench ARGS` is `vdvae bench service ARGS`."""
