"""The frozen dropline-tray: runs the GUI script dropline.ui.app:main."""

import sys

from dropline.ui.app import main

sys.exit(main())
