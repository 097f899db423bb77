"""What each row of the table should reach: declared once, under ``targets:`` in
``conf/bench.yaml``, and written into the table as the README writes a target (``≤ 10 s``),
with ✓ or ✗ where the row's own value is what the target bounds."""

from __future__ import annotations

from dataclasses import dataclass, fields

from omegaconf import DictConfig

from denoise.runtime.errors import SettingError
from denoise.runtime.settings import positive_number, setting, shown

WAITS = "photo_wait_seconds"


@dataclass(frozen=True)
class Targets:
    """The ``targets:`` of the bench's config, one field per key (see ``conf/bench.yaml``)."""

    first_parse_seconds: float
    reload_seconds: float
    data_share_percent: float
    training_ceiling_percent: float
    inference_ceiling_percent: float
    training_peak_gb: float
    predict_mib_per_megapixel: float
    view_overhead: float
    photo_wait_seconds: tuple[tuple[float, float], ...]  # (up to megapixels, seconds), by size
    help_seconds: float
    predict_start_seconds: float
    demo_start_seconds: float

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Targets:
        """The bench config's targets, each checked (a number above 0), so that a wrong one
        stops the bench before it measures."""
        values: dict[str, object] = {
            field.name: positive_number(cfg, f"targets.{field.name}")
            for field in fields(cls)
            if field.name != WAITS
        }
        waits = setting(cfg, f"targets.{WAITS}")
        try:
            pairs = tuple(sorted((float(w["megapixels"]), float(w["seconds"])) for w in waits))
        except (TypeError, KeyError, ValueError):
            pairs = ()
        if not pairs or not all(size > 0 and limit > 0 for size, limit in pairs):
            raise SettingError(
                f"targets.{WAITS}={shown(waits)}: must be a list of "
                "{megapixels: M, seconds: S} with numbers above 0"
            )
        return cls(**values, photo_wait_seconds=pairs)

    def photo_wait(self, megapixels: float) -> float | None:
        """The longest wait for a photo of this size (None above the largest size)."""
        return next((limit for size, limit in self.photo_wait_seconds if megapixels <= size), None)


def stated(sign: str, limit: float, unit: str) -> str:
    """A target as the README writes it: ``≤ 3 s``, ``≥ 80%``, ``≤ 2.25×``."""
    space = "" if unit in ("%", "×") else " "
    return f"{sign} {limit:g}{space}{unit}"


def within(value: float, limit: float, unit: str) -> str:
    """An upper bound, met (✓) or not (✗); a failed run (NaN) met nothing."""
    return f"{stated('≤', limit, unit)} {'✓' if value <= limit else '✗'}"
