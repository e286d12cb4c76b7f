"""deeppose engine: everything that turns a frame into poses (no GUI, no training code)."""
