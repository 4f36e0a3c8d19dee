"""POST /v1/images/generations, OpenAI's Images API: routes.py (the endpoint and its input builder),
bodies.py (OpenAI's request, answer and events), streams.py (the partial images)."""
