"""POST /sample, /sample/stream, /reconstruct and /upscale: routes.py (the endpoints and their input
builders), bodies.py (requests and answers), cascades.py (a cascade's stages), streams.py (the
server-sent events)."""
