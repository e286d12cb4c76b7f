"""The window's settings panel (a dock): model chooser (upper body / full body), model folder,
backend, stages, person tracking (follow at most, by pose, by body, face detection interval,
recheck interval, confirmation, flip averaging: the video command's tracking options),
smoothing, boxes, HUD, joint angles, record folder, and the live keypoints
stream (a WebSocket server, engine/streaming.py, with the number of clients connected). Every
change applies live (to the inference worker) and is saved at once
(:func:`app.settings.save_setting`, QSettings).

A mixin of :class:`app.window.MainWindow`: it uses the window's ``settings``, ``qsettings``,
``worker``, ``model``, ``live``, ``view`` and ``_set_hud``.
"""
from __future__ import annotations

import logging
import threading

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..engine.cli_args import model_folder, model_problem, split_host_port
from ..engine.constants import BACKENDS as RUNTIME_BACKENDS
from ..engine.constants import FLIP_MODES, MIN_JOINT_CONFIDENCE, MODELS
from .settings import MAX_CONFIRM_SETTING, MAX_EVERY_SETTING, MAX_PERSONS_SETTING, save_setting

log = logging.getLogger(__name__)

BACKENDS = ("auto",) + RUNTIME_BACKENDS
MODEL_LABELS = {"flic": "Upper body (FLIC, 11 joints)", "lsp": "Full body (LSP, 14 joints)",
                "body": "Body, any way up (psi v2, 17 joints)"}
"""The model chooser's items, one per shipped model (engine.cli_args.MODELS)."""


class SettingsPanelMixin:
    """The settings dock and the setters behind it (see the module docstring)."""

    def _build_settings_panel(self) -> None:
        dock = QDockWidget("Settings", self)
        dock.setObjectName("settings")
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        panel = QWidget(dock)
        form = QFormLayout(panel)
        s = self.settings

        self.model_combo = QComboBox(panel)
        for name in MODELS:
            self.model_combo.addItem(MODEL_LABELS.get(name, name), name)
        self._disable_unavailable_models()
        self._show_model_choice(s.model)
        self.model_combo.currentIndexChanged.connect(lambda i: self.set_model(self.model_combo.itemData(i)))
        form.addRow("Pose model", self.model_combo)

        self.weights_edit = self._folder_row(form, "Model folder", s.weights, self.set_weights, self._browse_weights)
        self.model_label = QLabel("loading...", panel)   # short; the details are in its tooltip
        form.addRow("Model", self.model_label)

        self.backend_combo = QComboBox(panel)
        backends = list(BACKENDS)
        if s.backend not in backends:
            backends.append(s.backend)
        self.backend_combo.addItems(backends)
        self._disable_unavailable_backends()
        self.backend_combo.setCurrentText(s.backend)
        self.backend_combo.currentTextChanged.connect(self.set_backend)
        form.addRow("Backend", self.backend_combo)

        self.stages_spin = QSpinBox(panel)
        self.stages_spin.setRange(1, max(1, s.stages or 3))
        self.stages_spin.setValue(max(1, s.stages or 3))
        self.stages_spin.valueChanged.connect(self.set_stages)
        form.addRow("Cascade stages", self.stages_spin)

        self.persons_spin = QSpinBox(panel)
        self.persons_spin.setRange(0, MAX_PERSONS_SETTING)
        self.persons_spin.setSpecialValueText("everyone")   # 0
        self.persons_spin.setValue(s.max_persons)
        self.persons_spin.setToolTip("Follow at most this many persons, those tracked longest (largest face first "
                                     "among those found together); 1: one person, e.g. you at a webcam when you "
                                     "are in view first")
        self.persons_spin.valueChanged.connect(self.set_max_persons)
        form.addRow("Follow at most", self.persons_spin)

        self.pose_check = self._check_row(
            form, "Track by pose", s.track_by_pose, self.set_track_by_pose,
            "Follow each person by his pose between face detections and check every estimate against his "
            "face (models with a face scaler); off: every detected face is a person, matched by overlap "
            "(--no-track-by-pose)")
        self.body_check = self._check_row(
            form, "Track by body", s.track_by_body, self.set_track_by_body,
            "Follow each person by his body, kept while the model sees a person there, however his face "
            "looks (models that give a presence score: the body model); needs tracking by pose")
        self.body_check.setEnabled(s.track_by_pose)
        self.detect_spin = self._frames_spin(panel, s.detect_every, self.set_detect_every,
                                             "Look for new faces every N-th frame while everyone is tracked by pose "
                                             "(and whenever a person is new or lost); 1: every frame (--detect-every)")
        form.addRow("Detect faces every", self.detect_spin)
        self.recheck_spin = self._frames_spin(panel, s.recheck_every, self.set_recheck_every,
                                              "Once \"Follow at most\" persons are tracked, look for their faces only "
                                              "every N-th frame (and at least every 1/3 s) (--recheck-every)")
        form.addRow("Recheck faces every", self.recheck_spin)
        self.confirm_spin = QSpinBox(panel)
        self.confirm_spin.setRange(1, MAX_CONFIRM_SETTING)
        self.confirm_spin.setSuffix(" detections")
        self.confirm_spin.setValue(s.confirm_hits)
        self.confirm_spin.setToolTip("Draw a new person once found in N of his first N+2 frames (--confirm)")
        self.confirm_spin.valueChanged.connect(self.set_confirm_hits)
        form.addRow("Confirm a person after", self.confirm_spin)
        self.flip_combo = QComboBox(panel)
        self.flip_combo.addItems(FLIP_MODES)
        self.flip_combo.setCurrentText(s.flip)
        self.flip_combo.setToolTip("Flip test-time averaging: crops also run mirrored and the two are averaged, at "
                                   "stage 1 only (first) or every stage (all: twice the network work) (--flip)")
        self.flip_combo.currentTextChanged.connect(self.set_flip)
        form.addRow("Flip averaging", self.flip_combo)

        self.smooth_check = self._check_row(form, "Smooth poses across frames", s.smooth, self.set_smooth)
        self.rotate_check = self._check_row(
            form, "Find people lying or upside down", s.rotate, self.set_rotate,
            "Also search faces in the frame turned by 90, 180 and 270 degrees and turn each person's crops "
            "with his roll (more face search work per frame)")
        self.boxes_check = self._check_row(form, "Show person and face boxes", s.show_boxes, self.set_show_boxes)
        self.unsure_check = self._check_row(
            form, "Hide unsure joints", s.hide_unsure, self.set_hide_unsure,
            f"Do not draw joints the model is unsure of (confidence below {MIN_JOINT_CONFIDENCE}; models that "
            "give a confidence, such as the body model); recordings' keypoints files keep every joint with "
            "its confidence")
        self.hud_check = self._check_row(form, "Show HUD", True, self._set_hud)
        self.angles_check = self._check_row(
            form, "Show joint angles", s.show_angles, self.set_show_angles,
            "Elbow, shoulder, hip and knee angles in degrees at their joints (those of the model's joints; "
            "docs/KEYPOINTS.md defines them)")

        self.serve_check = QCheckBox("Serve", panel)
        self.serve_check.setToolTip("Stream the keypoints live to other programs: a WebSocket server sending "
                                    "the keypoints header, then one JSON message per frame (docs/KEYPOINTS.md)")
        self.serve_check.setChecked(s.serve)
        self.serve_check.toggled.connect(lambda on: self.set_serve(on))
        self.serve_edit = QLineEdit(s.serve_address, panel)
        self.serve_edit.setToolTip("HOST:PORT to listen on; 127.0.0.1 is this machine only, 0.0.0.0 the network")
        self.serve_edit.editingFinished.connect(lambda: self.set_serve_address(self.serve_edit.text()))
        row = QHBoxLayout()
        row.addWidget(self.serve_check)
        row.addWidget(self.serve_edit, 1)
        form.addRow("Stream keypoints", row)
        self.serve_label = QLabel("off", panel)
        form.addRow("", self.serve_label)

        self.record_dir_edit = self._folder_row(form, "Record to", s.record_dir,
                                                lambda text: self._set_setting("record_dir", text),
                                                self._browse_record_dir)
        dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.settings_dock = dock

    @staticmethod
    def _check_row(form, label: str, checked: bool, on_toggled, tip: str = "") -> QCheckBox:
        """A check box as one row of ``form``, ``on_toggled(bool)`` connected. Returns it."""
        box = QCheckBox(label, form.parentWidget())
        if tip:
            box.setToolTip(tip)
        box.setChecked(checked)
        box.toggled.connect(on_toggled)
        form.addRow(box)
        return box

    @staticmethod
    def _frames_spin(panel, value: int, on_changed, tip: str) -> QSpinBox:
        """A spin box of a frame interval, 1 to :data:`app.settings.MAX_EVERY_SETTING` frames."""
        spin = QSpinBox(panel)
        spin.setRange(1, MAX_EVERY_SETTING)
        spin.setSuffix(" frames")
        spin.setValue(value)
        spin.setToolTip(tip)
        spin.valueChanged.connect(on_changed)
        return spin

    @staticmethod
    def _folder_row(form, label: str, text: str, on_edited, on_browse) -> QLineEdit:
        """A folder field with its Browse... button as one row of ``form``; ``on_edited(text)``
        runs when the field is edited. Returns the field."""
        panel = form.parentWidget()
        edit = QLineEdit(text, panel)
        edit.editingFinished.connect(lambda: on_edited(edit.text()))
        browse = QPushButton("Browse...", panel)
        browse.clicked.connect(on_browse)
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(browse)
        form.addRow(label, row)
        return edit

    def _disable_unavailable_models(self) -> None:
        """Grey out the shipped models that are not installed (e.g. weights/lsp before its
        weights land), the reason as the item's tooltip; the others show their folder."""
        combo = self.model_combo
        for i in range(combo.count()):
            name = combo.itemData(i)
            problem = model_problem(name)
            combo.model().item(i).setEnabled(problem is None)
            combo.setItemData(i, f"not available: {problem}" if problem else str(model_folder(name)),
                              Qt.ItemDataRole.ToolTipRole)

    def _show_model_choice(self, name: str) -> None:
        """Select ``name`` in the model chooser without acting on it."""
        i = self.model_combo.findData(name)
        if i >= 0 and i != self.model_combo.currentIndex():
            self.model_combo.blockSignals(True)
            self.model_combo.setCurrentIndex(i)
            self.model_combo.blockSignals(False)

    def set_model(self, name: str) -> None:
        """Switch to shipped model ``name`` ("flic" or "lsp") now: its folder ``weights/NAME`` is
        loaded by the running worker and both are saved. A model that is not installed is
        refused with its reason in the status bar (the chooser keeps the current one)."""
        problem = model_problem(name)
        if problem is not None:
            self._show_model_choice(self.settings.model)
            self.show_error(f"Model not switched: {problem}")
            return
        self._set_setting("model", name)
        self._show_model_choice(name)
        self.set_weights(str(model_folder(name)))

    def _disable_unavailable_backends(self) -> None:
        """Grey out the backends that cannot run here (e.g. tensorrt without a GPU), the reason
        as the item's tooltip; "auto" and the current choice stay selectable."""
        try:
            from deeppose.engine.backends import backend_status, canonical_name
            status = backend_status()
        except Exception:   # the list is a convenience: never keep the window from opening
            log.exception("backend status failed")
            return
        combo = self.backend_combo
        for i in range(combo.count()):
            try:
                name = canonical_name(combo.itemText(i))
            except Exception:
                continue
            ok, why = status.get(name, (True, ""))
            combo.setItemData(i, why, Qt.ItemDataRole.ToolTipRole)
            if not ok:
                combo.model().item(i).setEnabled(False)
                combo.setItemData(i, f"not available here: {why}", Qt.ItemDataRole.ToolTipRole)

    def _set_setting(self, name: str, value) -> None:
        setattr(self.settings, name, value)
        save_setting(self.qsettings, name, value)

    def set_weights(self, folder: str) -> None:
        folder = str(folder).strip()
        if folder == self.settings.weights and self.model is not None:
            return
        self._set_setting("weights", folder)
        if self.weights_edit.text() != folder:
            self.weights_edit.setText(folder)
        self.worker.configure(weights=folder)
        self.worker.reload_model()

    def _browse_weights(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder", self.settings.weights)
        if folder:
            self.set_weights(folder)

    def _browse_record_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Record to folder", self.settings.record_dir)
        if folder:
            self.record_dir_edit.setText(folder)
            self._set_setting("record_dir", folder)

    def set_backend(self, name: str) -> None:
        self._set_setting("backend", name)
        if self.backend_combo.currentText() != name:
            self.backend_combo.setCurrentText(name)
        self.worker.configure(backend=name)

    def set_stages(self, n: int) -> None:
        self._set_setting("stages", int(n))
        if self.stages_spin.value() != n:
            self.stages_spin.setValue(n)
        self.worker.configure(stages=int(n))

    def set_max_persons(self, n: int) -> None:
        """Follow at most ``n`` persons (0: everyone); saved, and applied from the next frame."""
        n = max(0, int(n))
        self._set_setting("max_persons", n)
        if self.persons_spin.value() != n:
            self.persons_spin.setValue(n)
        self.worker.configure(max_persons=n)

    def _set_pipeline_setting(self, name: str, value, widget, shown) -> None:
        """Save pipeline setting ``name``, show it in ``widget`` (``shown``: its current value)
        and hand it to the worker (live, or a rebuilt pipeline: see InferenceWorker.configure)."""
        self._set_setting(name, value)
        if shown != value:
            widget.blockSignals(True)
            if isinstance(widget, QCheckBox):
                widget.setChecked(value)
            elif isinstance(widget, QComboBox):
                widget.setCurrentText(value)
            else:
                widget.setValue(value)
            widget.blockSignals(False)
        self.worker.configure(**{name: value})

    def set_track_by_pose(self, on: bool) -> None:
        """Follow persons by pose where the model can (off: the plain face tracker; rebuilds the pipeline)."""
        self._set_pipeline_setting("track_by_pose", bool(on), self.pose_check, self.pose_check.isChecked())
        self.body_check.setEnabled(bool(on))

    def set_track_by_body(self, on: bool) -> None:
        """Follow persons by body where the model can (psi v2; rebuilds the pipeline)."""
        self._set_pipeline_setting("track_by_body", bool(on), self.body_check, self.body_check.isChecked())

    def set_detect_every(self, n: int) -> None:
        """Look for new faces every ``n``-th frame (applied from the next frame)."""
        self._set_pipeline_setting("detect_every", max(1, int(n)), self.detect_spin, self.detect_spin.value())

    def set_recheck_every(self, n: int) -> None:
        """At capacity, look for the tracked faces every ``n``-th frame (applied from the next frame)."""
        self._set_pipeline_setting("recheck_every", max(1, int(n)), self.recheck_spin, self.recheck_spin.value())

    def set_confirm_hits(self, n: int) -> None:
        """Draw a new person once found in ``n`` of his first n+2 frames (rebuilds the pipeline)."""
        self._set_pipeline_setting("confirm_hits", max(1, int(n)), self.confirm_spin, self.confirm_spin.value())

    def set_flip(self, mode: str) -> None:
        """Flip test-time averaging, "off", "first" or "all" (applied from the next frame)."""
        self._set_pipeline_setting("flip", str(mode), self.flip_combo, self.flip_combo.currentText())

    def set_rotate(self, on: bool) -> None:
        """Find people lying or upside down (rebuilds the pipeline with ``rotate``)."""
        self._set_setting("rotate", bool(on))
        self.rotate_check.setChecked(on)
        self.worker.configure(rotate=bool(on))

    def set_smooth(self, on: bool) -> None:
        self._set_setting("smooth", bool(on))
        self.smooth_check.setChecked(on)
        self.worker.configure(smooth=bool(on))

    def set_show_angles(self, on: bool) -> None:
        """Draw the joint angles over the video (saved)."""
        self._set_setting("show_angles", bool(on))
        if self.angles_check.isChecked() != bool(on):
            self.angles_check.setChecked(bool(on))
        self.view.show_angles = bool(on)
        if not on:
            self.view.angle_labels = []
        self.view.update()

    # -- the live stream ------------------------------------------------------------------
    def set_serve(self, on: bool, save: bool = True) -> bool:
        """Start (or stop) the WebSocket server on ``settings.serve_address``; returns whether
        it serves now. A server that cannot start (a bad address, the port in use) is one line
        in the status bar, and the box is unticked."""
        on = bool(on)
        if save:
            self._set_setting("serve", on)
        server = None
        if on:
            from deeppose.engine.streaming import KeypointsServer, StreamError, is_loopback

            try:
                host, port = split_host_port(self.settings.serve_address)
                old = self.live.server
                if old is not None and old.address == (host, port):
                    server = old     # serving there already
                else:
                    if old is not None:   # free its port first: the new address may be the same port
                        self._close_server_later(self.live.set_server(None), wait=True)
                    server = KeypointsServer(host, port)
            except (ValueError, StreamError) as e:
                self.show_error(f"Keypoints not streamed: {e}")
                on = False
            else:
                if not is_loopback(host):
                    self.show_status(f"Streaming keypoints on {server.url}: other machines can connect")
        if server is not self.live.server:
            self._close_server_later(self.live.set_server(server))
        if self.serve_check.isChecked() != on:
            self.serve_check.blockSignals(True)
            self.serve_check.setChecked(on)
            self.serve_check.blockSignals(False)
        self.update_stream_status()
        return on

    def set_serve_address(self, text: str) -> None:
        """Listen on HOST:PORT ``text`` from now on (saved; the server moves there if it runs)."""
        text = text.strip()
        try:
            split_host_port(text)
        except ValueError as e:
            self.show_error(f"Stream address not changed: {e}")
            self.serve_edit.setText(self.settings.serve_address)
            return
        if text == self.settings.serve_address:
            return
        self._set_setting("serve_address", text)
        if self.serve_edit.text() != text:
            self.serve_edit.setText(text)
        if self.live.server is not None:
            self.set_serve(True, save=False)

    @staticmethod
    def _close_server_later(server, wait: bool = False) -> None:
        """Close a server that no longer gets frames, off the GUI thread (it lets its clients
        take what is queued, up to 2 s); ``wait``: now (its port is needed again)."""
        if server is None:
            return
        if wait:
            server.close()
        else:
            threading.Thread(target=server.close, name="close-keypoints-server", daemon=True).start()

    def update_stream_status(self) -> None:
        """Show the server's address and the clients connected (panel and HUD)."""
        server = self.live.server if self.live is not None else None
        if server is None:
            text, hud = "off", ""
        else:
            n = server.clients
            text = f"{server.url}: {n} client{'s' if n != 1 else ''}"
            hud = text
        if self.serve_label.text() != text:
            self.serve_label.setText(text)
        if self.view.stats.stream != hud:
            self.view.stats.stream = hud
            self.view.update()

    def set_hide_unsure(self, on: bool) -> None:
        """Do not draw joints below the confidence threshold (saved)."""
        self._set_setting("hide_unsure", bool(on))
        self.unsure_check.setChecked(on)
        self.worker.configure(hide_unsure=bool(on))

    def set_show_boxes(self, on: bool) -> None:
        self._set_setting("show_boxes", bool(on))
        self.boxes_check.setChecked(on)
        self.worker.configure(show_boxes=bool(on))
