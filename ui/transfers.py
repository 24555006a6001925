"""The transfers window: each file moving now with its progress bar, and the overall bar."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QProgressBar,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dropline.ui import format as fmt
from dropline.ui.models import OpacityRole, ProgressRole, RowRole, TransfersModel
from dropline.ui.status import Moving, moving_words
from dropline.ui.widgets import ERROR_ACCENT, OK_ACCENT, EmptyState, ToolWindow, heading, muted

FAILED_BAR = ERROR_ACCENT
DONE_BAR = OK_ACCENT
STOPPED_BAR = "#80868b"


class ProgressDelegate(QStyledItemDelegate):
    """Draws the progress column as "4 MB of 9 MB" over a slim bar, and fades finished rows.

    A slim bar under the text, rather than the style's progress bar with text on it,
    keeps the figures legible over the filled part in every style and theme.
    """

    BAR_HEIGHT = 5

    def __init__(self, progress_column: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._column = progress_column

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        opacity = index.data(OpacityRole)
        painter.save()
        if isinstance(opacity, float):
            painter.setOpacity(opacity)
        if index.column() != self._column:
            super().paint(painter, option, index)
            painter.restore()
            return
        self.initStyleOption(option, index)
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        text = option.text
        option.text = ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, widget)

        rect: QRect = option.rect.adjusted(6, 3, -8, -5)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        painter.setPen(palette.color(text_role))
        text_rect = QRect(
            rect.left(), rect.top(), rect.width(), rect.height() - self.BAR_HEIGHT - 2
        )
        painter.drawText(
            text_rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text
        )

        fraction = float(index.data(ProgressRole) or 0.0)
        track = QRectF(
            rect.left(), rect.bottom() - self.BAR_HEIGHT + 1, rect.width(), self.BAR_HEIGHT
        )
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        groove = QColor(palette.color(QPalette.ColorRole.Text))
        groove.setAlphaF(0.15)
        painter.setBrush(groove)
        painter.drawRoundedRect(track, 2.5, 2.5)
        if fraction > 0:
            fill = QRectF(track)
            fill.setWidth(max(self.BAR_HEIGHT, track.width() * min(1.0, fraction)))
            result = getattr(index.data(RowRole), "result", "")
            bars = {"failed": FAILED_BAR, "ok": DONE_BAR, "stopped": STOPPED_BAR}
            colour = QColor(bars.get(result, ""))
            painter.setBrush(
                colour if colour.isValid() else palette.color(QPalette.ColorRole.Highlight)
            )
            painter.drawRoundedRect(fill, 2.5, 2.5)
        painter.restore()


class TransfersWindow(ToolWindow):
    def __init__(self, model: TransfersModel, parent: QWidget | None = None) -> None:
        super().__init__("Transfers", parent)
        self.model = model
        self.resize(760, 400)

        self.title = heading("Nothing is moving")
        self.summary = muted("")
        self.overall = QProgressBar()
        self.overall.setRange(0, 1000)
        self.overall.setTextVisible(False)
        self.overall.setAccessibleName("Overall progress")

        self.table = QTableView()
        self.table.setModel(model)
        self.table.setItemDelegate(ProgressDelegate(TransfersModel.PROGRESS, self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setShowGrid(False)
        # Nothing in this table can be acted on, so it takes no keyboard focus.
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(38)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(TransfersModel.FILE, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(TransfersModel.PROGRESS, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(TransfersModel.PROGRESS, 220)
        header.resizeSection(TransfersModel.FOLDER, 120)
        header.resizeSection(TransfersModel.SPEED, 90)
        header.resizeSection(TransfersModel.TIME_LEFT, 130)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)

        self.empty = EmptyState(
            "Nothing is moving right now",
            "Files you drop into your Dropline folders appear here while they upload, "
            "and files from the server while they download.",
        )
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.table)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 16)
        layout.setSpacing(8)
        layout.addWidget(self.connection_banner)
        layout.addWidget(self.title)
        layout.addWidget(self.summary)
        layout.addWidget(self.overall)
        layout.addWidget(self.stack, 1)

        model.totalsChanged.connect(self.refresh)
        model.rowsInserted.connect(self.refresh)
        model.rowsRemoved.connect(self.refresh)
        model.modelReset.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args: Any) -> None:
        done, total, bps = self.model.totals()
        active = self.model.active()
        moving = Moving(
            uploading=sum(1 for t in active if t.direction == "up"),
            downloading=sum(1 for t in active if t.direction == "down"),
            bytes_left=max(0, total - done),
            bytes_per_second=bps,
        )
        self.stack.setCurrentWidget(self.table if self.model.rowCount() else self.empty)
        if active:
            self.title.setText(moving_words(Moving(moving.uploading, moving.downloading)))
            parts = [f"{fmt.size(done)} of {fmt.size(total)}"]
            if bps > 0:
                parts.append(fmt.speed(bps))
            # Transfers run side by side: done when the slowest one is.
            longest = max(
                (t.bytes_left / t.bytes_per_second for t in active if t.bytes_per_second > 0),
                default=0.0,
            )
            left = fmt.seconds_left(longest)
            if left:
                parts.append(left)
            self.summary.setText(" · ".join(parts))
            self.overall.setValue(round(1000 * done / total) if total else 0)
            self.overall.show()
        else:
            self.title.setText("Everything is up to date" if not self.model.rowCount() else "Done")
            self.summary.setText("")
            self.overall.hide()

    def overall_text(self) -> str:
        return f"{self.title.text()} {self.summary.text()}".strip()
