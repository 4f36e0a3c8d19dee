"""`python -m service.bench`: the service benchmark (`vdvae bench service`)."""

import sys

from .service import main

sys.exit(main(prog="python -m service.bench"))
