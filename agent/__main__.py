"""``python -m agent`` is ``dropline-agent``."""

from __future__ import annotations

import sys

from agent.cli import main

sys.exit(main())
