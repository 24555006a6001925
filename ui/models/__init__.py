"""Table models of the tray's windows: history (paged), transfers, issues, versions, trash.

Kept apart from the views and from the agent: each model is fed plain protocol
records, and the history model pulls pages through a fetch function it is given,
so every model can be tested on its own.
"""

from __future__ import annotations

from dropline.ui.models._base import (
    OpacityRole,
    ProgressRole,
    RowRole,
    SortRole,
    display_path,
    file_name,
    folder_name,
)
from dropline.ui.models.history import HistoryFilter, HistoryModel, PageFetcher
from dropline.ui.models.issues import IssuesModel
from dropline.ui.models.transfers import Transfer, TransfersModel
from dropline.ui.models.trash import TrashModel
from dropline.ui.models.versions import VersionsModel

__all__ = [
    "HistoryFilter",
    "HistoryModel",
    "IssuesModel",
    "OpacityRole",
    "PageFetcher",
    "ProgressRole",
    "RowRole",
    "SortRole",
    "Transfer",
    "TransfersModel",
    "TrashModel",
    "VersionsModel",
    "display_path",
    "file_name",
    "folder_name",
]
