"""The HTTP layer below the routes: the server, its connections and the middleware around every
request. It knows requests and connections, not models."""
