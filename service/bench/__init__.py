"""The benchmarks behind `vdvae bench` (model, service, stress, visual-vae); the server never imports
them.
`python -m service.bench ARGS` is `vdvae bench service ARGS`."""
