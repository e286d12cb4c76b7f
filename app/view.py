"""The video view: the newest annotated frame scaled to the widget (aspect kept) plus the HUD
and, as an option, the joint angles at their joints."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter
from PyQt6.QtWidgets import QSizePolicy, QWidget


def _ema(old: float | None, new: float, alpha: float = 0.3) -> float:
    return new if old is None else (1 - alpha) * old + alpha * new


@dataclass
class HudStats:
    """Figures shown in the heads-up display (smoothed with an exponential moving average).

    Attributes:
        fps: frames displayed per second.
        latency_ms: capture-to-display latency of the frames shown, milliseconds.
        detect_ms: person detection time per frame, milliseconds.
        stage_ms: inference time of each cascade stage run, milliseconds.
        backend: runtime backend of the model ("" when no model is loaded).
        people: persons found in the last frame shown.
        dropped: frames of the source dropped because inference did not keep up.
        shown: frames displayed from the source.
        source_fps: the source's nominal frame rate.
        recording: whether a recording is being written.
        stream: the live stream's state ("ws://127.0.0.1:8765  2 clients"), "" when off.
    """

    fps: float | None = None
    latency_ms: float | None = None
    detect_ms: float | None = None
    stage_ms: list[float] = field(default_factory=list)
    backend: str = ""
    people: int = 0
    dropped: int = 0
    shown: int = 0
    source_fps: float = 0.0
    recording: bool = False
    stream: str = ""

    def lines(self) -> list[str]:
        """The HUD text, one string per line."""
        def ms(v):
            return "-" if v is None else f"{v:.0f} ms"
        fps = "-" if self.fps is None else f"{self.fps:.1f}"
        src = f" / {self.source_fps:.0f}" if self.source_fps else ""
        out = [f"FPS {fps}{src}   latency {ms(self.latency_ms)}   dropped {self.dropped}"]
        if self.backend:
            stages = "  ".join(f"s{i + 1} {ms(v)}" for i, v in enumerate(self.stage_ms)) or "-"
            out.append(f"detect {ms(self.detect_ms)}   {stages}")
            out.append(f"backend {self.backend}   people {self.people}")
        else:
            out.append("no model loaded: showing the video without poses")
        if self.stream:
            out.append(f"stream {self.stream}")
        if self.recording:
            out.append("\u25cf REC")
        return out


def angle_labels(result, skeleton, min_confidence: float = 0.0) -> list[tuple[float, float, str]]:
    """The joint angles of every person of a :class:`engine.pipeline.FrameResult` as labels:
    ``(x, y, text)`` with (x, y) the angle's vertex joint in frame pixels and text such as
    "92°"; angles that are unknown (a joint out of the frame) are left out, and so are angles
    with a joint whose confidence is below ``min_confidence`` (a joint not drawn: the app's
    "Hide unsure joints" passes :data:`engine.constants.MIN_JOINT_CONFIDENCE`)."""
    import numpy as np

    from deeppose.engine.angles import angle_defs, angle_indices, joint_angles
    from deeppose.engine.geometry import joints_in_frame

    if result is None or skeleton is None or not angle_defs(skeleton):
        return []
    w, h = result.frame_size
    vertex = angle_indices(skeleton)[:, 1]
    out = []
    for p in result.persons:
        pose = np.asarray(p.pose, dtype=np.float64)
        if pose.shape != (skeleton.k, 2):   # a result of another model (one is loading)
            continue
        shown = joints_in_frame(pose, w, h) if w and h else np.ones(skeleton.k, bool)
        conf = getattr(p, "confidence", None)
        if conf is not None and min_confidence > 0:
            shown = shown & ~(np.asarray(conf, dtype=np.float64) < min_confidence)   # NaN: shown, as drawn
        deg = joint_angles(pose, skeleton, shown)
        out += [(float(pose[j, 0]), float(pose[j, 1]), f"{d:.0f}\u00b0") for j, d in zip(vertex, deg) if np.isfinite(d)]
    return out


class VideoView(QWidget):
    """Shows a QImage scaled to fit (aspect ratio kept, letterboxed) with the HUD on top.

    ``message`` (centred text) is shown when there is no frame, or over the last frame when
    the source failed.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 180)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.image: QImage | None = None
        self.captured: float | None = None   # perf_counter() of the frame's capture
        self._painted_new = True
        self.stats = HudStats()
        self.show_hud = True
        self.show_angles = False
        self.angle_labels: list[tuple[float, float, str]] = []   # (x, y, text), frame pixels
        self.message = ""
        self._font = QFont("DejaVu Sans Mono")
        self._font.setStyleHint(QFont.StyleHint.Monospace)
        self._font.setPointSizeF(10.0)

    # -- data ---------------------------------------------------------------------------
    def set_frame(self, image: QImage, captured: float) -> None:
        """Show ``image`` (frame pixels); ``captured`` is its perf_counter() capture time."""
        self.image = image
        self.captured = captured
        self._painted_new = False
        self.update()

    def set_message(self, message: str) -> None:
        self.message = message
        self.update()

    def image_rect(self) -> QRectF:
        """Where the frame is drawn in widget coordinates (aspect kept, centred)."""
        if self.image is None or self.image.isNull():
            return QRectF()
        w, h = self.width(), self.height()
        iw, ih = self.image.width(), self.image.height()
        scale = min(w / iw, h / ih)
        dw, dh = iw * scale, ih * scale
        return QRectF((w - dw) / 2, (h - dh) / 2, dw, dh)

    def map_from_image(self, x: float, y: float) -> QPointF:
        """Widget position of frame pixel (x, y) (pixel centres, project convention)."""
        r = self.image_rect()
        s = r.width() / self.image.width()
        return QPointF(r.x() + (x + 0.5) * s, r.y() + (y + 0.5) * s)

    # -- painting -----------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(16, 16, 16))
        if self.image is not None and not self.image.isNull():
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(self.image_rect(), self.image)
            if not self._painted_new and self.captured is not None:
                # capture-to-display: the frame has just been drawn into the window's backing store
                self._painted_new = True
                self.stats.latency_ms = _ema(self.stats.latency_ms, (time.perf_counter() - self.captured) * 1000.0)
            if self.show_angles and self.angle_labels:
                self._paint_angles(p)
            if self.show_hud:
                self._paint_hud(p)
        if self.message:
            self._paint_message(p)
        p.end()

    def _paint_hud(self, p: QPainter) -> None:
        lines = self.stats.lines()
        p.setFont(self._font)
        fm = QFontMetricsF(self._font)
        pad = 6.0
        width = max(fm.horizontalAdvance(s) for s in lines) + 2 * pad
        height = fm.lineSpacing() * len(lines) + 2 * pad
        r = self.image_rect()
        box = QRectF(r.x() + 8, r.y() + 8, width, height)
        p.fillRect(box, QColor(0, 0, 0, 160))
        p.setPen(QColor(235, 235, 235))
        y = box.y() + pad + fm.ascent()
        for s in lines:
            if s.startswith("\u25cf"):
                p.setPen(QColor(255, 70, 70))
            p.drawText(QPointF(box.x() + pad, y), s)
            y += fm.lineSpacing()

    def _paint_angles(self, p: QPainter) -> None:
        """Each angle's value beside its vertex joint, on a dark tab."""
        font = QFont(self._font)
        font.setPointSizeF(9.0)
        p.setFont(font)
        fm = QFontMetricsF(font)
        for x, y, text in self.angle_labels:
            at = self.map_from_image(x, y)
            box = QRectF(at.x() + 6, at.y() - fm.height() - 4, fm.horizontalAdvance(text) + 6, fm.height() + 2)
            p.fillRect(box, QColor(0, 0, 0, 170))
            p.setPen(QColor(255, 235, 120))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_message(self, p: QPainter) -> None:
        font = QFont(self._font)
        font.setPointSizeF(12.0)
        p.setFont(font)
        fm = QFontMetricsF(font)
        lines = self.message.splitlines()
        width = min(self.width() - 20.0, max(fm.horizontalAdvance(s) for s in lines) + 24)
        height = fm.lineSpacing() * len(lines) + 16
        box = QRectF((self.width() - width) / 2, (self.height() - height) / 2, width, height)
        p.fillRect(box, QColor(0, 0, 0, 190))
        p.setPen(QColor(255, 210, 120))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
