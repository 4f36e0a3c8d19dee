"""GET /health/live, /health/ready, /metrics and /problems/{slug}: routes.py, bodies.py."""
