"""The frozen dropline-server: runs the console script dropline.server.cli:main."""

import sys

from dropline.server.cli import main

sys.exit(main())
