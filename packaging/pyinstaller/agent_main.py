"""The frozen dropline-agent: runs the console script dropline.agent.cli:main."""

import sys

from dropline.agent.cli import main

sys.exit(main())
