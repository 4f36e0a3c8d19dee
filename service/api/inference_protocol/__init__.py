"""The Open Inference Protocol (KServe v2, REST): routes.py (the endpoints, the protocol's models of
each served model, and a request's tensors -> items), bodies.py (metadata, requests and answers),
tensors.py (JSON and binary tensor data)."""
