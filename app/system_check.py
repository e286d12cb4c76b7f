"""Checks, before any Qt import, that the desktop app can open a window here.

Qt's own failure on a machine without the X11 client libraries is an abort with a misleading
message (``xcb-cursor0 or libxcb-cursor0 is needed`` when libxcb-icccm4 and libxcb-keysyms1
were missing). :func:`display_problem` instead names every missing library's Debian package
in one line. The library list is what PyQt6's Qt 6 needs (``ldd`` of libQt6Gui,
libQt6Widgets, libQt6DBus and the xcb platform plugin, minus what every Debian has).
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable, Mapping

# shared library -> Debian package; needed by Qt's GUI libraries on any platform plugin
GUI_LIBRARIES = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}
# needed by the xcb (X11) platform plugin, the default on Linux desktops
XCB_LIBRARIES = {
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
# platform plugins that need no display server
HEADLESS_PLATFORMS = {"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs", "vkkhrdisplay"}
NO_DISPLAY_HINT = "`python main.py video INPUT` processes a video file without a display"


def can_load(library: str) -> bool:
    """Whether the dynamic linker finds and loads ``library`` (a soname, e.g. libxcb-icccm.so.4)."""
    try:
        ctypes.CDLL(library)
        return True
    except OSError:
        return False


def display_problem(environ: Mapping[str, str] | None = None,
                    load: Callable[[str], bool] = can_load, platform: str | None = None) -> str | None:
    """None when Qt can open the app's window here, else one line saying what is missing.

    Args:
        environ: the environment (default ``os.environ``): QT_QPA_PLATFORM, DISPLAY, WAYLAND_DISPLAY.
        load: tells whether a shared library loads (tests pass a stand-in).
        platform: ``sys.platform`` (default); the check applies to Linux only.
    """
    environ = os.environ if environ is None else environ
    if (platform or sys.platform) != "linux":
        return None
    qpa = environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip().lower()
    needed = dict(GUI_LIBRARIES)
    if qpa in HEADLESS_PLATFORMS:
        pass
    elif qpa == "wayland" or (not qpa and environ.get("WAYLAND_DISPLAY") and not environ.get("DISPLAY")):
        if not environ.get("WAYLAND_DISPLAY"):
            return (f"no display found: QT_QPA_PLATFORM is wayland but WAYLAND_DISPLAY is not set; the desktop "
                    f"app needs a display ({NO_DISPLAY_HINT})")
    else:   # xcb, Qt's default on Linux
        if not environ.get("DISPLAY"):
            return (f"no display found (DISPLAY is not set): the desktop app needs an X11 or Wayland display "
                    f"({NO_DISPLAY_HINT})")
        needed.update(XCB_LIBRARIES)
    missing = [lib for lib in needed if not load(lib)]
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(needed[lib] for lib in missing))
    return (f"the desktop app needs system libraries that are missing ({', '.join(missing)}): install them "
            f"with `sudo apt-get install {packages}` ({NO_DISPLAY_HINT})")
