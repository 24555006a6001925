"""``python -m dropline.agent`` is ``dropline-agent``."""

from __future__ import annotations

import sys

from dropline.agent.cli import main

sys.exit(main())
