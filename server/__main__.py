"""``python -m dropline.server``: the same as ``dropline-server``."""

from __future__ import annotations

import sys

from dropline.server.cli import main

sys.exit(main())
