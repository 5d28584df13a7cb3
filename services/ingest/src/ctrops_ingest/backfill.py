"""At start: ``highlights.json`` for uploads profiled before ingest wrote one.

Ingest builds an upload's dashboard highlights when it profiles the upload
(``uploads.decide``). Uploads profiled by an older ingest have ``profile.json`` and no
``highlights.json``, so their dashboard shows no segments or hours. On start, ingest builds
the missing ones from each stored profile and the totals of its accepted verdict
(``FileUploaded.info``: the rows and the CTR). Only uploads with a verdict: an upload without
one is still being decided (``decide`` writes its highlights before the verdict is recorded,
so the two never write the same file) or was refused. Idempotent: an upload that has its
highlights is left alone, so a restart does nothing more, and one unreadable profile is
logged and skipped, never stopping the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from ctrops_common.dataset import highlights_path, profile_path
from ctrops_common.documents import Profile, read_document
from ctrops_common.storage import FileStore, is_id

from .highlights import write_highlights

log = logging.getLogger(__name__)

Totals = Callable[[str], tuple[int, float] | None]  # file id -> (total rows, CTR in percent) of its verdict


def missing_highlights(store: FileStore) -> list[str]:
    """The uploads with a profile and no highlights, in file-id order."""
    files = store.path("files")
    if not files.is_dir():
        return []
    return [folder.name for folder in sorted(files.iterdir())
            if is_id(folder.name) and store.exists(profile_path(folder.name))
            and not store.exists(highlights_path(folder.name))]


def backfill_highlights(store: FileStore, totals: Totals) -> list[str]:
    """Write the missing highlights; returns the file ids written."""
    written = []
    for file_id in missing_highlights(store):
        try:
            accepted = totals(file_id)
            if accepted is None:
                continue
            profile = read_document(store, profile_path(file_id), Profile)
            write_highlights(store, file_id, profile, *accepted)
        except (OSError, ValidationError) as exc:
            log.warning("upload %s: no highlights built from its profile (%s)", file_id, exc)
            continue
        written.append(file_id)
    if written:
        log.info("built the dashboard highlights of %d upload(s) profiled before ingest wrote them", len(written))
    return written
