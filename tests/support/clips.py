"""Small test videos made at test time with PyAV (H.264 in MP4): frames of walking.mp4 at a
chosen size, with chosen presentation times (variable frame rate), a sample aspect ratio
(non-square pixels), or damaged packets (a corrupt middle)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def walking_frames(src: Path, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The first ``n`` frames of ``src`` as (H, W, 3) uint8 BGR, resized to ``size`` (width, height)."""
    frames = []
    with av.open(str(src)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="bgr24", width=size[0], height=size[1]))
            if len(frames) == n:
                break
    assert len(frames) == n
    return frames


def write_clip(path: Path, frames: list[np.ndarray], pts: list[int] | None = None,
               time_base: Fraction = Fraction(1, 30), sample_aspect: Fraction | None = None) -> Path:
    """Encode BGR ``frames`` as H.264 MP4 at ``path``; frame i is shown at ``pts[i] * time_base``
    seconds (default i / 30), its pixels ``sample_aspect`` wide per unit of height (default square)."""
    h, w = frames[0].shape[:2]
    pts = list(range(len(frames))) if pts is None else list(pts)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = time_base
        s.time_base = time_base
        if sample_aspect is not None:
            s.codec_context.sample_aspect_ratio = Fraction(sample_aspect)
        for img, p in zip(frames, pts):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            vf.pts, vf.time_base = int(p), time_base
            for packet in s.encode(vf):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path


def damage_packets(path: Path, first: int, count: int) -> list[float]:
    """Overwrite with zeros the data of the video packets number first .. first+count-1 (in
    file order), as a damaged stretch of a file would be; returns their presentation times, s."""
    spans, times = [], []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for i, packet in enumerate(p for p in c.demux(stream) if p.size):
            if first <= i < first + count:
                spans.append((packet.pos, packet.size))
                times.append(float(packet.pts * stream.time_base))
    assert len(spans) == count
    with open(path, "r+b") as f:
        for pos, size in spans:
            f.seek(pos)
            f.write(bytes(size))
    return times


def frame_times(path: Path) -> list[float]:
    """Presentation time (s) of every frame a decoder gets from ``path``, in decoding order."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [float(f.pts * stream.time_base) for f in c.decode(stream)]
