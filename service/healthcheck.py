"""`python -m service.healthcheck`: exit 0 when the service on this machine is ready, else 1.

The Docker HEALTHCHECK runs it every few seconds, so it imports neither torch nor the app: only the
settings, to find the port (VDVAE_PORT) the service listens on.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from .settings import Settings


def ready_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}/health/ready"


def main() -> int:
    try:
        with urllib.request.urlopen(ready_url(Settings()), timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1  # 503 (HTTPError is a URLError), refused, or timed out


if __name__ == "__main__":
    sys.exit(main())
