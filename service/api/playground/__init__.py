"""GET / and /playground: the page (routes.py) and its files (static/: HTML, CSS, JavaScript modules)."""
