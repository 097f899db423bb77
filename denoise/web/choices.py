"""What the demo page offers, importing nothing heavy, so that the page is laid out before
torch loads; ``tests/test_demo.py`` holds each equal to what ``predict`` accepts."""

from __future__ import annotations

# scikit-image's pictures by the name the page shows: grey and colour, people and things
SAMPLES = {
    "camera (grey)": "camera",
    "astronaut": "astronaut",
    "coffee": "coffee",
    "chelsea the cat": "chelsea",
}
MODELS = ("natural", "faces")  # the shipped models (denoise.inference.shipped.SHIPPED_NAMES)
PRECISIONS = ("fp32", "bf16", "auto")  # denoise.inference.checkpoints.PRECISIONS
OWN_VIEWS = "the model's own"  # self_ensemble=null
VIEWS = (OWN_VIEWS, "1", "2", "4", "8")  # self_ensemble counts


def chosen_views(choice: str) -> int | None:
    """The views radio's choice as ``self_ensemble``: None is the model's own."""
    return None if choice == OWN_VIEWS else int(choice)
