"""The HTTP API: one folder per endpoint family, each with its routes (routes.py: the router, its
endpoints and how each turns its body into work items) and its request and response bodies beside
them (bodies.py). The families follow the OpenAPI tags at /docs:

    images/      POST /sample, /sample/stream, /reconstruct, /upscale
    latents/     POST /encode, /decode, /interpolate
    models/      GET /v1/models, /v1/models/{name}
    health/      GET /health/live, /health/ready, /metrics, /problems/{slug}
    playground/  GET /, /playground and the page's static files

What the families share: bodies.py (the image answers, the problem), answers.py (JSON or PNG
answers), routing.py (how a model endpoint runs: admitted, typed, lean) and openapi.py (the
published schema). A new family (an OpenAI-compatible images API, the Open Inference Protocol) is a
new folder here with its routes.py and bodies.py, its router included in service/app.py.
"""
