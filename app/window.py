"""The main window: video view with HUD, source chooser, Start/Stop/Record and live settings.

The GUI thread only draws and reacts to the user; capture runs on a Python thread
(app/capture.py) and inference on a QThread (app/worker.py). Every failure (no camera, a
camera unplugged, an unreadable file, a missing model or backend) ends as a message in the
status bar and over the view; the window keeps running.

The window's parts live beside it as mixins of :class:`MainWindow`: the source chooser, camera
probe and opened or dropped files (app/sources.py), the settings panel (app/settings_panel.py;
persisted by app/settings.py) and command-line automation (app/automation.py: screenshot, exit
code, Ctrl-C and SIGTERM).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from datetime import datetime
from pathlib import Path

from PyQt6.QtCore import QSettings, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QFontMetrics, QKeySequence
from PyQt6.QtWidgets import QLabel, QMainWindow, QToolBar

from ..engine.constants import MIN_JOINT_CONFIDENCE
from ..engine.outputs import overwrite_problem, recording_outputs
from .automation import AutomationMixin
from .capture import CaptureThread, LatestFrameSlot, Source
from .settings import AppSettings, load_settings, open_qsettings
from .settings_panel import SettingsPanelMixin
from .sources import SourcesMixin
from .view import VideoView, _ema, angle_labels
from .worker import InferenceWorker, ModelStatus

log = logging.getLogger(__name__)


class MainWindow(SourcesMixin, SettingsPanelMixin, AutomationMixin, QMainWindow):
    """The deeppose desktop app.

    Args:
        source: start with this source (camera index or file) instead of the first camera.
        overrides: settings given on the command line (weights, model, backend, stages) for this run
            only; they are not saved unless changed again in the window.
        quit_after_frames: close after this many frames were displayed (or when the source
            ends or fails), for automation and tests.
        screenshot: PNG file to save a grab of the window to after the last frame.
        record: start recording to this video file at once (keypoints beside it, .jsonl).
        qsettings: the settings store (default :func:`app.settings.open_qsettings`).
        probe_cameras: look for cameras (off in tests that give a file source).
        live: the live outputs given on the command line (``--serve``, ``--osc``: an
            :class:`engine.streaming.LiveOutputs`, already listening); its server stands for the
            saved stream setting in this run (not saved). Closed with the window.
    """

    automationFinished = pyqtSignal()

    def __init__(self, source: Source | None = None, overrides: dict | None = None,
                 quit_after_frames: int | None = None, screenshot: str | Path | None = None,
                 record: str | Path | None = None, qsettings: QSettings | None = None, probe_cameras: bool = True,
                 live=None):
        super().__init__()
        self.setWindowTitle("deeppose")
        self.setAcceptDrops(True)
        self.qsettings = qsettings or open_qsettings()
        self.settings: AppSettings = load_settings(self.qsettings)
        for k, v in (overrides or {}).items():
            if v is not None:
                setattr(self.settings, k, v)
        self.quit_after_frames = quit_after_frames
        self.screenshot_path = Path(screenshot) if screenshot else None
        self.exit_code = 0
        self.recording_path: Path | None = None
        self.status_message = ""        # the whole status-bar message (the bar may show it elided)
        self._requested_stages = (overrides or {}).get("stages")   # from the command line
        self._finished = False
        self._closing = False
        self.source: Source | None = None
        self.capture: CaptureThread | None = None
        self.playing = False
        self.recording = False
        self.model: ModelStatus | None = None
        self.model_error: str | None = None
        self.frames_shown = 0          # since the current source started
        self.total_frames_shown = 0    # since the window opened
        self.last_display = None       # the DisplayFrame shown last
        self.errors: list[str] = []    # every error message shown (for tests and logs)
        self.end_info: dict | None = None  # how the current source ended (None while it runs)
        self._display_times: deque[float] = deque(maxlen=60)
        self._pending_record = Path(record) if record else None
        from ..engine.streaming import LiveOutputs

        self.live = live if live is not None else LiveOutputs()
        serve_from_command_line = self.live.server is not None
        if serve_from_command_line:   # this run only, as the other command-line settings
            host, port = self.live.server.address
            self.settings.serve = True
            self.settings.serve_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

        self.slot = LatestFrameSlot()
        self.worker = InferenceWorker(self.slot, self.settings.pipeline_settings(), self.settings.show_boxes,
                                      self.settings.hide_unsure)
        self.worker.frameReady.connect(self._on_frame)
        self.worker.modelLoading.connect(self._on_model_loading)
        self.worker.modelLoaded.connect(self._on_model_loaded)
        self.worker.modelFailed.connect(self._on_model_failed)
        self.worker.failed.connect(self.show_error)
        self.worker.sourceEnded.connect(self._on_source_ended)
        self.worker.recordingChanged.connect(self._on_recording_changed)
        self.worker.set_live(self.live)

        self._build_ui()
        self.view.show_angles = self.settings.show_angles
        if self.settings.serve and not serve_from_command_line:
            self.set_serve(True, save=False)   # the saved setting: listen again
        self._stream_timer = QTimer(self)
        self._stream_timer.timeout.connect(self.update_stream_status)
        self._stream_timer.start(500)
        self.update_stream_status()
        geometry = self.qsettings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1180, 720)

        self.worker.start()
        self._open_first_source(source, probe_cameras)

    # -- UI -----------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.view = VideoView(self)
        self.view.set_message("Looking for cameras...")
        self.setCentralWidget(self.view)

        tb = QToolBar("Playback", self)
        tb.setObjectName("playback")
        tb.setMovable(False)
        self.addToolBar(tb)
        self._build_source_chooser(tb)
        tb.addSeparator()
        self.start_action = QAction("Start", self)
        self.start_action.setShortcut(QKeySequence("Ctrl+Return"))
        self.start_action.triggered.connect(self.start)
        self.stop_action = QAction("Stop", self)
        self.stop_action.setShortcut(QKeySequence("Ctrl+."))
        self.stop_action.triggered.connect(self.stop)
        self.record_action = QAction("Record", self)
        self.record_action.setCheckable(True)
        self.record_action.setShortcut(QKeySequence("Ctrl+R"))
        self.record_action.triggered.connect(self._on_record_clicked)
        for a in (self.start_action, self.stop_action, self.record_action):
            tb.addAction(a)
        open_action = QAction("Open video...", self)
        open_action.setToolTip("Open a video file (Ctrl+O); you can also drop one on the window")
        open_action.setShortcut(QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self.open_file_dialog)
        tb.addSeparator()
        tb.addAction(open_action)
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        self.addAction(quit_action)

        self._build_settings_panel()

        self.model_state = QLabel("model: -", self)
        self.statusBar().addPermanentWidget(self.model_state)
        self.state_label = QLabel("stopped", self)
        self.statusBar().addPermanentWidget(self.state_label)
        self._update_actions()

    def show_status(self, message: str) -> None:
        """Show ``message`` in the status bar, elided to the room left of the permanent labels
        (the whole text is in the bar's tooltip and in ``status_message``)."""
        self.status_message = message
        bar = self.statusBar()
        room = bar.width() - sum(w.sizeHint().width() + 12 for w in (self.model_state, self.state_label)) - 16
        text = QFontMetrics(bar.font()).elidedText(message, Qt.TextElideMode.ElideRight, max(room, 40))
        bar.setToolTip(message if text != message else "")
        bar.showMessage(text)

    def _set_hud(self, on: bool) -> None:
        self.view.show_hud = on
        self.view.update()

    def _update_actions(self) -> None:
        has_source = self.source is not None
        self.start_action.setEnabled(has_source and not self.playing)
        self.stop_action.setEnabled(self.playing)
        self.record_action.setEnabled(self.playing or self.recording)
        self.record_action.setChecked(self.recording)
        state = "stopped"
        if self.playing and self.source is not None:
            state = f"playing {self.source.label}"
        if self.recording:
            state += "  \u25cf REC"
        self.state_label.setText(state)

    # -- playback -----------------------------------------------------------------------
    def start_source(self, source: Source) -> None:
        """Switch to ``source`` and start it (stops the current one, finishing a recording)."""
        self._stop_capture()
        self.source = source
        self._select_current_source()
        self.start()

    def start(self) -> None:
        """Start (or restart from its beginning) the current source."""
        if self.source is None:
            self.show_error("no source: choose a camera or open a video file")
            return
        self._stop_capture()
        if self.model is None and self.model_error is not None:
            self.worker.reload_model()      # the user may have fixed the model folder meanwhile
        generation = self.slot.reset()
        self.worker.new_source(self.source.label)
        self.frames_shown = 0
        self.end_info = None
        self._display_times.clear()
        self.view.stats.fps = None
        self.view.stats.dropped = 0
        self.view.set_message("")
        self.capture = CaptureThread(self.source, self.slot, generation, ready=self.worker.ready)
        self.capture.start()
        self.playing = True
        self.show_status(f"Playing {self.source.label}")
        if self._pending_record is not None:
            video, self._pending_record = self._pending_record, None
            self.start_recording(video)
        self._update_actions()

    def stop(self) -> None:
        """Stop the current source (and finish any recording); the last frame stays on screen."""
        if self.recording:
            self.stop_recording()
        self._stop_capture()
        if self.source is not None:
            self.show_status(f"Stopped {self.source.label}")
        self._update_actions()

    def _stop_capture(self) -> None:
        if self.capture is not None:
            self.capture.stop()
            if self.capture.is_alive():
                log.warning("capture thread %s did not stop within 2 s; abandoning it", self.capture.name)
            self.capture = None
        self.slot.reset()       # drop the frame held and any end/error of the old source
        self.playing = False

    # -- recording ----------------------------------------------------------------------
    def _on_record_clicked(self, checked: bool) -> None:
        if checked:
            self.start_recording()
        else:
            self.stop_recording()
        self.record_action.setChecked(self.recording)

    def start_recording(self, video_path: str | Path | None = None) -> Path | None:
        """Record the annotated video (and keypoints beside it, same name, .jsonl).

        Default file: ``<record folder>/deeppose-<source>-<date-time>.mp4``. Returns the path,
        or None when nothing is recorded: a file that is the video source playing (also through
        a hard link or a symlink; the video command's check,
        :func:`engine.outputs.overwrite_problem`) is refused with a message in the window.
        """
        if not self.playing:
            self.show_error("nothing to record: start a source first")
            return None
        if self.model is None and self.model_error is not None:
            self.show_error(f"cannot record: no model is loaded ({self.model_error})")
            return None
        if video_path is None:
            folder = Path(self.settings.record_dir or ".").expanduser()
            stem = Path(str(self.source.value)).stem if self.source.kind == "file" else f"camera{self.source.value}"
            video_path = folder / f"deeppose-{stem}-{datetime.now():%Y%m%d-%H%M%S}.mp4"
        video_path = Path(video_path)
        problem = overwrite_problem(recording_outputs(video_path),
                                    [self.source.value] if self.source.kind == "file" else [])
        if problem:
            self.show_error(f"cannot record: {problem}")
            self.automation_failed(2)
            return None
        try:
            video_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.show_error(f"cannot record to {video_path.parent}: {e.strerror or e}")
            return None
        self.worker.start_recording(*(path for path, _ in recording_outputs(video_path)))
        self.recording = True
        self.recording_path = video_path
        self._update_actions()
        return video_path

    def stop_recording(self) -> None:
        if self.recording:
            self.worker.stop_recording()

    def _on_recording_changed(self, on: bool, message: str) -> None:
        self.recording = on
        self.view.stats.recording = on
        self.view.update()      # the HUD's REC line goes with the recording, also when stopped
        if message.startswith("cannot"):
            self.show_error(message)
        elif message:
            self.show_status(message)
        self._update_actions()

    # -- worker signals -----------------------------------------------------------------
    def _on_model_loading(self, folder: str) -> None:
        self.model = None
        self.model_label.setText(f"loading {Path(folder).name} ...")
        self.model_label.setToolTip(str(folder))
        self.model_state.setText(f"model: loading {Path(folder).name} ...")

    def _on_model_loaded(self, model: ModelStatus) -> None:
        self.model = model
        self.model_error = None
        self.model_label.setText(f"{model.name}: {model.skeleton.upper()}, {model.num_stages} stages")
        self.model_label.setToolTip(f"{model.folder}\n{model.skeleton.upper()} joints, {model.num_stages} cascade "
                                    f"stages\nbackend: {model.description}")
        self.model_label.setStyleSheet("")
        self._show_model_choice(model.skeleton)   # the chooser shows the kind of model running
        asked = self._requested_stages
        if asked and asked > model.num_stages:
            self._requested_stages = None   # said once
            self.show_error(f"--stages {asked}: model {model.name} has {model.num_stages} stages; "
                            f"running all {model.num_stages}")
            self.automation_failed(2)
        spin = self.stages_spin
        spin.blockSignals(True)
        spin.setRange(1, model.num_stages)
        spin.setValue(model.num_stages if self.settings.stages <= 0 else min(self.settings.stages, model.num_stages))
        spin.blockSignals(False)
        self.model_state.setText(f"model: {model.name} ({model.backend.split(' ')[0]})")

    def _on_model_failed(self, message: str, kind: str = "model") -> None:
        self.model = None
        self.model_error = message
        self.model_label.setText("not loaded")
        self.model_label.setToolTip(message)
        self.model_label.setStyleSheet("color: #c03030")
        self.model_state.setText("model: not loaded")
        if kind == "backend":
            self.show_error(f"Backend {self.settings.backend} cannot run this model: {message}. Showing the video "
                            "without poses; choose another backend in Settings.")
        else:
            self.show_error(f"Model not loaded: {message}. Showing the video without poses; "
                            "choose a model folder in Settings.")
        self.automation_failed(1)   # automation: a run without its model failed

    def show_error(self, message: str) -> None:
        """A failure the user should see: status bar (kept until the next message) and log."""
        log.warning("%s", message)
        self.errors.append(message)
        self.show_status(message)

    def _on_source_ended(self, info: dict) -> None:
        label = info.get("label") or (self.source.label if self.source else "source")
        err = info.get("error")
        self.end_info = info
        self.playing = False
        if self.capture is not None:
            self.capture.stop(0.5)
            self.capture = None
        if err:
            self.show_error(err)
            self.view.set_message(err)
            self.automation_failed(1, finish=False)   # finished below
        else:
            msg = (f"End of {label}: {info.get('captured', 0)} frames read, {self.frames_shown} shown, "
                   f"{info.get('dropped', 0)} dropped" + (f"; {info['note']}" if info.get("note") else ""))
            self.show_status(msg)
        self._update_actions()
        if self.quit_after_frames is not None:
            self.finish_automation()

    def _on_frame(self) -> None:
        d = self.worker.take_display()
        if d is None or self._finished:
            return
        if self.quit_after_frames is not None and self.total_frames_shown >= self.quit_after_frames:
            return          # the last frame is on screen; closing is queued
        now = time.perf_counter()
        self._display_times.append(now)
        st = self.view.stats
        if len(self._display_times) >= 2:
            span = self._display_times[-1] - self._display_times[0]
            if span > 0:
                st.fps = (len(self._display_times) - 1) / span
        r = d.result
        if r is not None:
            st.detect_ms = _ema(st.detect_ms, r.detect_seconds * 1000.0)
            ms = [s * 1000.0 for s in r.stage_seconds]
            if len(ms) != len(st.stage_ms):
                st.stage_ms = ms
            else:
                st.stage_ms = [_ema(a, b) for a, b in zip(st.stage_ms, ms)]
            st.people = len(r.persons)
            st.backend = self.model.backend if self.model is not None else r.backend
            if self.view.show_angles:
                self.view.angle_labels = angle_labels(r, d.skeleton,
                                                      MIN_JOINT_CONFIDENCE if self.settings.hide_unsure else 0.0)
        else:
            st.backend = ""
            st.people = 0
            st.stage_ms = []
            self.view.angle_labels = []
        st.dropped = d.dropped
        st.shown = self.frames_shown + 1
        st.source_fps = d.source_fps
        st.recording = self.recording
        self.last_display = d
        self.frames_shown += 1
        self.total_frames_shown += 1
        self.view.set_frame(d.image, d.captured)
        if self.quit_after_frames is not None and self.total_frames_shown >= self.quit_after_frames:
            QTimer.singleShot(0, self.finish_automation)

    # -- closing ------------------------------------------------------------------------
    def saves_geometry(self) -> bool:
        """Whether closing stores the window's size and place for the next run: only for a
        window a user saw and placed, not an automated run (``quit_after_frames``) nor one
        without a screen (the offscreen or minimal Qt platform), which would replace the
        user's saved window with a headless one."""
        from PyQt6.QtGui import QGuiApplication

        headless = QGuiApplication.platformName() in ("offscreen", "minimal")
        return self.quit_after_frames is None and not headless

    def closeEvent(self, event) -> None:
        if not self._closing:
            self._closing = True
            self._finished = True
            if self.screenshot_path is not None and not self.screenshot_path.exists():
                self.save_screenshot()
            self._stop_capture()
            self.worker.stop_recording()
            if not self.worker.stop(120000):   # a model load (ONNX export) cannot be interrupted
                log.warning("inference thread did not stop within 120 s")
            self._stream_timer.stop()
            self.live.close()   # the clients get what is queued, then the end of the stream
            if self.saves_geometry():
                self.qsettings.setValue("geometry", self.saveGeometry())
                self.qsettings.sync()
        event.accept()
