"""Files on disk: image files in and out, figures, and atomic writes (never a half-written
file)."""
