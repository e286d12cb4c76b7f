"""The window's settings panel (a dock): model chooser (upper body / full body), model folder,
backend, stages, smoothing, boxes, HUD, record folder. Every change applies live (to the inference worker) and is saved at once
(:func:`app.settings.save_setting`, QSettings).

A mixin of :class:`app.window.MainWindow`: it uses the window's ``settings``, ``qsettings``,
``worker``, ``model`` and ``_set_hud``.
"""
from __future__ import annotations

import logging

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDockWidget, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                             QLineEdit, QPushButton, QSpinBox, QWidget)

from ..engine.cli_args import model_folder, model_problem
from ..engine.constants import BACKENDS as RUNTIME_BACKENDS
from ..engine.constants import MODELS
from .settings import MAX_PERSONS_SETTING, save_setting

log = logging.getLogger(__name__)

BACKENDS = ("auto",) + RUNTIME_BACKENDS
MODEL_LABELS = {"flic": "Upper body (FLIC, 11 joints)", "lsp": "Full body (LSP, 14 joints)"}
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

        self.smooth_check = QCheckBox("Smooth poses across frames", panel)
        self.smooth_check.setChecked(s.smooth)
        self.smooth_check.toggled.connect(self.set_smooth)
        form.addRow(self.smooth_check)
        self.boxes_check = QCheckBox("Show person and face boxes", panel)
        self.boxes_check.setChecked(s.show_boxes)
        self.boxes_check.toggled.connect(self.set_show_boxes)
        form.addRow(self.boxes_check)
        self.hud_check = QCheckBox("Show HUD", panel)
        self.hud_check.setChecked(True)
        self.hud_check.toggled.connect(self._set_hud)
        form.addRow(self.hud_check)

        self.record_dir_edit = self._folder_row(form, "Record to", s.record_dir,
                                                lambda text: self._set_setting("record_dir", text),
                                                self._browse_record_dir)
        dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.settings_dock = dock

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

    def set_smooth(self, on: bool) -> None:
        self._set_setting("smooth", bool(on))
        self.smooth_check.setChecked(on)
        self.worker.configure(smooth=bool(on))

    def set_show_boxes(self, on: bool) -> None:
        self._set_setting("show_boxes", bool(on))
        self.boxes_check.setChecked(on)
        self.worker.configure(show_boxes=bool(on))
