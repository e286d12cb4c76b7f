"""deeppose desktop app (PyQt6)."""
