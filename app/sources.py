"""The window's sources: the source chooser (cameras found, files opened), the camera probe,
"Open video file..." and files dropped on the window.

A mixin of :class:`app.window.MainWindow`: it uses the window's ``settings``, ``view``,
``source``, ``quit_after_frames``, ``start_source``, ``show_status``, ``show_error`` and
``finish_automation``.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtWidgets import QComboBox, QFileDialog, QLabel, QToolBar

from .capture import Source, list_cameras

log = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv);;All files (*)"

# data of the source chooser's special items
_NO_CAMERA = "none"
_OPEN_FILE = "open"
_REFRESH = "refresh"


class _CameraProbe(QObject):
    """Lists cameras on a Python thread (opening a camera may take a second)."""

    found = pyqtSignal(list)

    def start(self) -> None:
        threading.Thread(target=self._run, name="camera-probe", daemon=True).start()

    def _run(self) -> None:
        try:
            cams = list_cameras()
        except Exception:
            log.exception("camera probe failed")
            cams = []
        self.found.emit(cams)


class SourcesMixin:
    """The source chooser and the ways a source is opened (see the module docstring)."""

    def _build_source_chooser(self, tb: QToolBar) -> None:
        tb.addWidget(QLabel(" Source: "))
        self.source_combo = QComboBox(self)
        self.source_combo.setMinimumContentsLength(22)
        self.source_combo.activated.connect(self._on_source_chosen)
        tb.addWidget(self.source_combo)

    def _open_first_source(self, source: Source | None, probe_cameras: bool) -> None:
        """Look for cameras (on a thread) and start ``source``, or the first camera found."""
        self._probe = _CameraProbe()
        self._probe.found.connect(self._on_cameras)
        self._cameras_probed = False
        if probe_cameras:
            self._probe.start()
        else:
            self._on_cameras([], start_first=False)
        if source is not None:
            self._add_source_item(source)
            self.start_source(source)
        elif not probe_cameras:
            self.view.set_message("Choose a camera or open a video file (or drop one here).")

    def _on_cameras(self, cams: list, start_first: bool = True) -> None:
        self._cameras_probed = True
        combo = self.source_combo
        keep = [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())
                if isinstance(combo.itemData(i), Source) and combo.itemData(i).kind == "file"]
        combo.blockSignals(True)
        combo.clear()
        if cams:
            for i in cams:
                combo.addItem(f"Camera {i}", Source("camera", i))
        else:
            combo.addItem("No camera found", _NO_CAMERA)
        for text, data in keep:
            combo.addItem(text, data)
        combo.addItem("Open video file...", _OPEN_FILE)
        combo.addItem("Look for cameras again", _REFRESH)
        combo.blockSignals(False)
        self._select_current_source()
        if start_first and self.source is None:
            if cams:
                self.start_source(Source("camera", cams[0]))
            else:
                self.view.set_message("No camera found.\nOpen a video file (Ctrl+O, or the Source list) or drop one here.")
                self.show_status("No camera found: open a video file or drop one on the window")
                if self.quit_after_frames is not None:   # automation: nothing will ever play
                    self.show_error("no camera found and no --source given: nothing to play")
                    self.automation_failed(1)

    def _select_current_source(self) -> None:
        combo = self.source_combo
        for i in range(combo.count()):
            if combo.itemData(i) == self.source and self.source is not None:
                combo.setCurrentIndex(i)
                return
        if self.source is None:
            combo.setCurrentIndex(0)

    def _add_source_item(self, source: Source) -> None:
        combo = self.source_combo
        for i in range(combo.count()):
            if combo.itemData(i) == source:
                return
        if source.kind == "camera":
            combo.insertItem(0, f"Camera {source.value}", source)
            idx = combo.findData(_NO_CAMERA)
            if idx >= 0:
                combo.removeItem(idx)
        else:
            at = combo.findData(_OPEN_FILE)
            combo.insertItem(at if at >= 0 else combo.count(), Path(str(source.value)).name, source)
            combo.setItemData(at if at >= 0 else combo.count() - 1, str(source.value), Qt.ItemDataRole.ToolTipRole)

    def _on_source_chosen(self, index: int) -> None:
        data = self.source_combo.itemData(index)
        if data == _OPEN_FILE:
            self._select_current_source()
            self.open_file_dialog()
        elif data == _REFRESH:
            self._select_current_source()
            self.show_status("Looking for cameras...")
            self._probe.start()
        elif data == _NO_CAMERA:
            self.show_status("No camera found: open a video file or drop one on the window")
        elif isinstance(data, Source):
            self.start_source(data)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video file", self.settings.last_dir or str(Path.home()), VIDEO_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path) -> None:
        """Play a video file (as chosen in the dialog or dropped on the window)."""
        path = Path(path)
        self._set_setting("last_dir", str(path.parent))
        source = Source("file", str(path))
        self._add_source_item(source)
        self.start_source(source)

    def dragEnterEvent(self, event) -> None:
        if self._dropped_file(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        path = self._dropped_file(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.open_file(path)

    @staticmethod
    def _dropped_file(mime) -> Path | None:
        if mime is None or not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                return Path(url.toLocalFile())
        return None
