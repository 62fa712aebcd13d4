"""What every view that draws trace records has in common."""

from __future__ import annotations

from typing import Any

from lab.trace import TraceRecord

BAD_RECORD = (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError)


class TraceView:
    """Mixin for widgets that draw from trace records.

    ``apply`` takes a batch in order; ``reset`` forgets everything (a replay
    seeking back); ``state`` is a plain-data summary of what the view shows,
    used to compare a live run with its replay. Views never raise on a record
    they do not understand: they ignore it.
    """

    def apply(self, records: list[TraceRecord]) -> None:
        raise NotImplementedError

    def bad_record(self, rec: TraceRecord, exc: Exception) -> None:
        """A record whose data does not have the documented shape: skipped, counted, reported once."""
        self.bad_records = getattr(self, "bad_records", 0) + 1
        if self.bad_records == 1:
            notify = getattr(self, "notify", None)
            if notify is not None:
                notify(
                    f"{type(self).__name__} skipped a malformed {rec.layer}/{rec.name} record "
                    f"at {rec.t:.3f} s ({type(exc).__name__}: {exc}); later ones are skipped quietly",
                    severity="warning",
                    timeout=8,
                )

    def reset(self) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Draw what ``apply`` only noted (views that batch their redraws override this)."""

    def state(self) -> Any:
        raise NotImplementedError


def fmt_rate(bps: float | None) -> str:
    if bps is None:
        return "–"
    if bps >= 1e6:
        return f"{bps / 1e6:.2f} Mb/s"
    if bps >= 1e3:
        return f"{bps / 1e3:.0f} kb/s"
    return f"{bps:.0f} b/s"


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


SPARK = "▁▂▃▄▅▆▇█"


def spark(values: list[float], width: int = 12, *, top: float | None = None) -> str:
    """A text sparkline of the last ``width`` values, scaled to ``top`` (default: their own maximum)."""
    vals = values[-width:]
    if not vals:
        return ""
    top = top or max(vals) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in vals)


def short_conn(conn: str) -> str:
    """``10.0.1.1:43353->10.0.2.2:5001`` stays; longer IPv6 forms are shortened."""
    return conn if len(conn) <= 34 else conn[:16] + "…" + conn[-16:]
