"""The columns that hold each row's time, shared by ingest (which reads them), the scorer (which
splits a batch into monitoring periods by them, and ignores them in JSON rows) and the generator.

A column named one of ``TIME_COLUMN_NAMES`` (any case) is never a model feature. In a file to
score ingest keeps it in the Parquet copy as ``DATE_COLUMN`` (date32): each row's calendar day
in Korean time (``LOCAL_OFFSET_MINUTES`` east of UTC; a value without an offset is taken as KST).
"""

from __future__ import annotations

TIME_COLUMN_NAMES = ("date", "event_date", "timestamp", "event_time")
DATE_COLUMN = "date"
LOCAL_OFFSET_MINUTES = 9 * 60  # KST, UTC+9, no daylight saving


def is_time_column(name: str) -> bool:
    return name.strip().lower() in TIME_COLUMN_NAMES
