"""From a stored upload to a verdict: outputs in place, nothing half-written, repeatable."""

from __future__ import annotations


import pyarrow.parquet as pq
import pytest

from ctrops_common.datagen import generate
from ctrops_common.dataset import highlights_path, parquet_path, profile_path, upload_path
from ctrops_common.documents import Profile, read_document
from ctrops_common.events import FileRejected, FileUploaded, Topic, UploadReceived, new_id
from ctrops_common.feature_names import parse_mapping_csv, save_override
from ctrops_common.storage import FileStore
from ctrops_ingest.pipeline import IngestOptions
from ctrops_ingest.uploads import decide

OPTIONS = IngestOptions(block_bytes=256 * 1024)


@pytest.fixture
def store(tmp_path) -> FileStore:
    return FileStore(tmp_path / "store")


def stored(store: FileStore, data: bytes, filename: str = "ads.csv") -> UploadReceived:
    file_id = new_id()
    store.write_bytes(upload_path(file_id), data)
    return UploadReceived(file_id=file_id, filename=filename, location=upload_path(file_id), size_bytes=len(data))


def leftovers(store: FileStore) -> list[str]:
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())


def test_valid_upload_gets_parquet_and_profile_and_no_temp_files(store, tmp_path):
    source = tmp_path / "gen.csv"
    truth = generate(source, 500, seed=2)
    upload = stored(store, source.read_bytes())
    topic, payload = decide(store, upload, OPTIONS)
    assert topic == Topic.FILE_UPLOADED and isinstance(payload, FileUploaded)
    assert payload.parquet_location == parquet_path(upload.file_id)
    assert payload.profile_location == profile_path(upload.file_id)
    assert payload.info.clicked_one == truth["clicks"] and payload.rows == 500
    assert pq.read_metadata(store.path(payload.parquet_location)).num_rows == 500
    assert read_document(store, payload.profile_location, Profile).segments.hour
    assert leftovers(store) == sorted([upload_path(upload.file_id), parquet_path(upload.file_id),
                                       profile_path(upload.file_id), highlights_path(upload.file_id)])

    again_topic, again = decide(store, upload, OPTIONS)  # a redelivery writes the same files again
    assert again_topic == topic and again.model_dump() == payload.model_dump()
    assert len(leftovers(store)) == 4


def test_column_descriptions_follow_the_users_feature_name_mapping(store, tmp_path):
    source = tmp_path / "gen.csv"
    generate(source, 300, seed=3)
    _, shipped = decide(store, stored(store, source.read_bytes()), OPTIONS)
    assert shipped.column_descriptions["hour"] == "시간대" and shipped.column_descriptions["feat_a_3"] == "정보영역 A-3"
    save_override(store, parse_mapping_csv("column,name\nfeat_a_3,앱 사용 빈도\n".encode()))
    _, mapped = decide(store, stored(store, source.read_bytes()), OPTIONS)
    assert mapped.column_descriptions["feat_a_3"] == "앱 사용 빈도"
    assert mapped.column_descriptions["hour"] == "시간대"  # not overridden: the shipped name


def test_structural_problem_removes_everything(store):
    upload = stored(store, b"hour,seq\n1,2\n")
    topic, payload = decide(store, upload, OPTIONS)
    assert topic == Topic.FILE_REJECTED and isinstance(payload, FileRejected)
    assert payload.status_code == 400 and "missing: clicked" in payload.message
    assert leftovers(store) == []


def test_invalid_data_is_profiled_but_not_converted(store):
    upload = stored(store, b"hour,seq,clicked\n1,\"1,2\",3\n2,\"3\",0\n")
    topic, payload = decide(store, upload, OPTIONS)
    assert topic == Topic.FILE_UPLOADED
    assert payload.validation.is_valid is False and payload.parquet_location is None
    assert not store.exists(parquet_path(upload.file_id))
    assert store.exists(profile_path(upload.file_id))


def test_an_upload_that_is_gone_is_410(store):
    upload = UploadReceived(file_id=new_id(), filename="x.csv", location="", size_bytes=1)
    upload.location = upload_path(upload.file_id)
    topic, payload = decide(store, upload, OPTIONS)
    assert topic == Topic.FILE_REJECTED and payload.status_code == 410


def test_an_unexpected_failure_answers_500_and_cleans_up(store, monkeypatch):
    import ctrops_ingest.uploads as uploads

    def broken(*_args, **_kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(uploads, "ingest_csv", broken)
    upload = stored(store, b"hour,seq,clicked\n1,\"1\",0\n")
    topic, payload = decide(store, upload, OPTIONS)
    assert topic == Topic.FILE_REJECTED and payload.status_code == 500
    assert "RuntimeError" in payload.message
    assert leftovers(store) == []


# -- files to score (UploadReceived.purpose == "scoring") ---------------------------------------------


def without_clicked(source) -> bytes:
    """The generated CSV with its ``clicked`` column removed (an unlabelled batch to score)."""
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(column_types={"seq": "string"}))
    out = source.with_suffix(".nolabel.csv")
    pacsv.write_csv(table.drop_columns(["clicked"]), out)
    return out.read_bytes()


def to_score(store: FileStore, data: bytes) -> UploadReceived:
    return stored(store, data).model_copy(update={"purpose": "scoring"})


def test_a_file_to_score_without_clicked_is_valid_and_converted_without_labels(store, tmp_path):
    source = tmp_path / "gen.csv"
    generate(source, 400, seed=5)
    upload = to_score(store, without_clicked(source))
    topic, payload = decide(store, upload, OPTIONS)
    assert topic == Topic.FILE_UPLOADED, payload
    assert payload.purpose == "scoring" and payload.labelled is False
    assert payload.validation.is_valid is True and payload.validation.errors == []
    assert payload.rows == 400 and "clicked" not in payload.columns and "seq" in payload.columns
    assert payload.info.clicked_one == 0 and payload.info.clicked_zero == 0 and payload.info.ctr == 0.0
    table = pq.read_table(store.path(payload.parquet_location))
    assert table.num_rows == 400 and "clicked" not in table.column_names and "seq" in table.column_names
    assert "clicked" not in read_document(store, payload.profile_location, Profile).columns

    # The same bytes as a training upload are refused: training needs the labels.
    topic, refused = decide(store, stored(store, without_clicked(source)), OPTIONS)
    assert topic == Topic.FILE_REJECTED and "missing: clicked" in refused.message


def test_a_labelled_file_to_score_keeps_its_labels_and_may_hold_one_class(store):
    one_class = b"hour,seq,clicked\n1,\"1,2\",0\n2,\"3\",0\n3,\"4,5,6\",0\n"
    topic, payload = decide(store, to_score(store, one_class), OPTIONS)
    assert topic == Topic.FILE_UPLOADED and payload.purpose == "scoring" and payload.labelled is True
    assert payload.validation.is_valid is True
    assert any("no AUC" in w for w in payload.validation.warnings), payload.validation.warnings
    table = pq.read_table(store.path(payload.parquet_location))
    assert table.column("clicked").to_pylist() == [0, 0, 0]

    # As a training upload the same file is invalid: the model needs both classes.
    topic, training = decide(store, stored(store, one_class), OPTIONS)
    assert training.purpose == "training" and training.labelled is True
    assert training.validation.is_valid is False and training.parquet_location is None


def test_a_file_to_score_still_gets_the_other_checks(store):
    bad_label = b"hour,seq,clicked\n1,\"1,2\",2\n2,\"3\",0\n"
    topic, payload = decide(store, to_score(store, bad_label), OPTIONS)
    assert topic == Topic.FILE_UPLOADED and payload.validation.is_valid is False
    assert "clicked: 1 rows are not 0 or 1" in payload.validation.errors[0] and payload.parquet_location is None

    bad_seq = b"hour,seq\n1,\"1,x\"\n2,\"3\"\n"
    topic, payload = decide(store, to_score(store, bad_seq), OPTIONS)
    assert topic == Topic.FILE_UPLOADED and payload.labelled is False and payload.validation.is_valid is False
    assert payload.validation.errors[0].startswith("seq: 1 rows")

    topic, rejected = decide(store, to_score(store, b"hour,clicked\n1,0\n"), OPTIONS)
    assert topic == Topic.FILE_REJECTED and rejected.status_code == 400
    assert "missing: seq" in rejected.message and "'clicked' (0/1) is optional" in rejected.message


def test_a_file_to_score_with_a_date_column_says_so_in_its_verdict(store):
    data = b"hour,seq,clicked,event_date\n1,\"1,2\",0,2026-02-03\n2,\"3\",1,2026-05-20 09:00\n3,\"4\",0,2026-03-01\n"
    topic, payload = decide(store, to_score(store, data), OPTIONS)
    assert topic == Topic.FILE_UPLOADED and payload.validation.is_valid, payload.validation
    assert (payload.time_column, payload.first_date, payload.last_date) == ("event_date", "2026-02-03", "2026-05-20")
    assert payload.feature_columns == ["hour"] and "event_date" in payload.columns
    assert pq.read_table(store.path(payload.parquet_location)).column_names == ["hour", "seq", "clicked", "date"]

    # The same file as a training upload: the column is left out, the file stays valid.
    topic, training = decide(store, stored(store, data), OPTIONS)
    assert training.validation.is_valid and training.time_column is None and training.feature_columns == ["hour"]
    assert "event_date" not in pq.read_table(store.path(training.parquet_location)).column_names
