"""From a stored upload to a verdict: run the pipeline, put its outputs in place atomically.

``decide(store, upload, options)`` returns the event to publish: ``FILE_UPLOADED`` (with
the training copy's location when the data is valid; ``purpose`` and ``labelled`` say whether
it is a file to score and whether it has ``clicked``) or ``FILE_REJECTED`` (after removing
everything stored for the upload). The Parquet file is written to a temporary sibling and
renamed into ``files/<file_id>/data.parquet`` only when complete, so a crash never leaves a
half-written file under its final name; running it twice writes the same files again. Beside
the profile (``files/<file_id>/profile.json``) it stores the upload's audience highlights
(``files/<file_id>/highlights.json``, ``highlights.build_highlights``), which the gateway's
marketer dashboard serves.
The column descriptions are the Korean names of the feature-name mapping in effect (the
shipped one overlaid with a user's uploaded mapping, ctrops_common.feature_names).
"""

from __future__ import annotations

import errno
import logging
from contextlib import suppress

from ctrops_common.dataset import column_description, parquet_path, profile_path, upload_path
from ctrops_common.documents import write_document
from ctrops_common.events import DataInfo, FileRejected, FileUploaded, Payload, Topic, UploadReceived, Validation
from ctrops_common.feature_names import effective_feature_names
from ctrops_common.storage import FileStore

from .highlights import write_highlights
from .pipeline import IngestOptions, ingest_csv
from .validation import Rejected

log = logging.getLogger(__name__)


def _discard(store: FileStore, file_id: str) -> None:
    store.delete(f"uploads/{file_id}")
    store.delete(f"files/{file_id}")


def _rejected(store: FileStore, upload: UploadReceived, status: int, message: str) -> tuple[Topic, Payload]:
    _discard(store, upload.file_id)
    return Topic.FILE_REJECTED, FileRejected(
        file_id=upload.file_id, filename=upload.filename, status_code=status, message=message
    )


def decide(store: FileStore, upload: UploadReceived, options: IngestOptions) -> tuple[Topic, Payload]:
    """Validate, profile and convert one upload (blocking: run it in a worker thread)."""
    file_id = upload.file_id
    source = store.path(upload_path(file_id))
    if not source.is_file():
        return _rejected(store, upload, 410, "The uploaded file is no longer stored. Upload it again.")
    tmp = store.temp_path(parquet_path(file_id))
    try:
        # A file to score (POST /api/predict/{run}/batch): the same checks, but ``clicked`` may be
        # absent (an unlabelled batch) or hold one class.
        result = ingest_csv(source, tmp, options, labels_required=upload.purpose != "scoring")
        if result.parquet_written:
            store.commit_temp(tmp, parquet_path(file_id))
        write_document(store, profile_path(file_id), result.profile)
        # What the marketers' dashboard shows of the data, built here (the data's owner) and served as is.
        write_highlights(store, file_id, result.profile, result.info["total_rows"], result.info["ctr"])
    except Rejected as exc:
        log.info("upload %s (%s) rejected: %s", file_id, upload.filename, exc.message)
        return _rejected(store, upload, exc.status_code, exc.message)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise  # retried by the bus
        log.error("upload %s: disk full", file_id)
        return _rejected(store, upload, 507, "The server ran out of disk space while storing the file. "
                                              "Try again later.")
    except Exception as exc:  # noqa: BLE001 - a person is waiting: answer, do not retry a bug four times
        log.exception("upload %s (%s) could not be processed", file_id, upload.filename)
        return _rejected(store, upload, 500, f"The file could not be processed ({type(exc).__name__}). "
                                              "It was not stored; try again or contact the operators.")
    finally:
        with suppress(OSError):
            tmp.unlink()

    names = effective_feature_names(store)
    return Topic.FILE_UPLOADED, FileUploaded(
        file_id=file_id,
        filename=upload.filename,
        location=upload_path(file_id),
        parquet_location=parquet_path(file_id) if result.parquet_written else None,
        encoding=result.encoding,
        rows=result.rows,
        columns=result.columns,
        feature_columns=result.feature_columns,
        validation=Validation(is_valid=result.is_valid, errors=result.errors, warnings=result.warnings),
        info=DataInfo(**result.info),
        preview=result.preview,
        column_descriptions={c: column_description(c, names) for c in result.columns},
        profile_location=profile_path(file_id),
        purpose=upload.purpose,
        labelled=result.labelled,
        time_column=result.time_column,
        first_date=result.first_date,
        last_date=result.last_date,
    )
