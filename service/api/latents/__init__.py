"""POST /encode, /decode and /interpolate: routes.py (the endpoints and their input builders),
bodies.py (requests and answers)."""
