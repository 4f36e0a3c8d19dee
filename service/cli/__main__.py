"""`python -m service.cli`: the `vdvae` command without its console script."""

import sys

from . import main

sys.exit(main())
