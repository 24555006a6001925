"""The S3 blob store against a real S3 endpoint (moto_server, through boto3 as in
production): round trips, ranged reads, a big multipart blob, damage found by the chunk
sums, the sweeper's listing, and errors from the store as clear problems."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from dropline.server.storage.blob_url import (
    InvalidBlobUrl,
    open_blob_store,
    parse_blob_url,
)
from dropline.server.storage.blobs import new_blob_id
from dropline.server.storage.integrity import SUM_CHUNK, BlobDamaged
from dropline.server.storage.s3_blobs import ObjectStoreUnavailable, S3BlobStore
from tests.support.s3 import s3_env, shared_moto, stored_blob_ids

__all__ = ["s3_env"]  # the fixture, used by name

MIB = 1024 * 1024


def store_of(env: dict[str, str]) -> S3BlobStore:
    """The store the server builds from the environment (the s3_env fixture set it)."""
    store = open_blob_store(env["DROPLINE_BLOB_URL"])
    assert isinstance(store, S3BlobStore)
    return store


def bucket_of(env: dict[str, str]) -> str:
    return parse_blob_url(env["DROPLINE_BLOB_URL"]).bucket


def staged_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"{new_blob_id()}.staged"
    path.write_bytes(data)
    return path


def keys(env: dict[str, str]) -> list[str]:
    listed = shared_moto().client().list_objects_v2(Bucket=bucket_of(env))
    return sorted(item["Key"] for item in listed.get("Contents", ()))


def object_bytes(env: dict[str, str], key: str) -> bytes:
    reply = shared_moto().client().get_object(Bucket=bucket_of(env), Key=key)
    data: bytes = reply["Body"].read()
    return data


def test_a_blob_round_trips_under_its_prefix(s3_env: dict[str, str], tmp_path: Path) -> None:
    store = store_of(s3_env)
    data = os.urandom(2 * MIB + 123)
    staged = staged_file(tmp_path, data)
    blob_id = new_blob_id()
    store.put(blob_id, staged)

    assert not staged.exists()  # the store took it
    assert keys(s3_env) == [
        f"data/blobs/{blob_id[:2]}/{blob_id}",
        f"data/checksums/{blob_id[:2]}/{blob_id}",
    ]
    assert object_bytes(s3_env, store.key(blob_id)) == data
    assert store.size(blob_id) == len(data)
    with store.open(blob_id) as reader:
        assert reader.read() == data
    assert store.footprint(blob_id) == len(data) + 8 + 3 * 32

    store.delete(blob_id)
    assert keys(s3_env) == []
    store.delete(blob_id)  # a missing blob is no error
    with pytest.raises(FileNotFoundError):
        store.open(blob_id)
    with pytest.raises(FileNotFoundError):
        store.size(blob_id)


@pytest.mark.parametrize(
    "offset", [0, 1, SUM_CHUNK - 1, SUM_CHUNK, SUM_CHUNK + 12345, 3 * SUM_CHUNK + 7]
)
def test_ranged_reads_start_at_odd_offsets(
    s3_env: dict[str, str], tmp_path: Path, offset: int
) -> None:
    store = store_of(s3_env)
    data = os.urandom(3 * MIB + 500)
    blob_id = new_blob_id()
    store.put(blob_id, staged_file(tmp_path, data))
    with store.open(blob_id, offset) as reader:
        assert reader.read(1000) == data[offset : offset + 1000]
        assert reader.read() == data[offset + 1000 :]
    with store.open(blob_id, offset) as reader:  # and back again after a seek
        reader.seek(5)
        assert reader.read(SUM_CHUNK + 10) == data[5 : SUM_CHUNK + 15]


def test_reads_at_and_past_the_end_and_of_an_empty_blob(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = store_of(s3_env)
    data = b"twelve bytes"
    blob_id, empty_id = new_blob_id(), new_blob_id()
    store.put(blob_id, staged_file(tmp_path, data))
    store.put(empty_id, staged_file(tmp_path, b""))
    with store.open(blob_id, len(data)) as reader:
        assert reader.read() == b""
    with store.open(blob_id, len(data) - 1) as reader:
        assert reader.read() == b"s"
    with store.open(empty_id) as reader:
        assert reader.read() == b""
    assert store.size(empty_id) == 0


def test_a_big_blob_goes_up_in_parts_and_streams_back(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = store_of(s3_env)
    staged = tmp_path / "big.staged"
    digest = hashlib.sha256()
    with staged.open("wb") as out:
        for _ in range(65):  # 65 MiB: past the multipart threshold
            block = os.urandom(MIB)
            digest.update(block)
            out.write(block)
    blob_id = new_blob_id()
    store.put(blob_id, staged)

    head = shared_moto().client().head_object(Bucket=bucket_of(s3_env), Key=store.key(blob_id))
    assert "-" in head["ETag"]  # a multipart upload's ETag: "<md5 of md5s>-<parts>"
    assert head["ContentLength"] == 65 * MIB
    back = hashlib.sha256()
    with store.open(blob_id) as reader:
        while block := reader.read(4 * MIB):
            back.update(block)
    assert back.hexdigest() == digest.hexdigest()
    with store.open(blob_id, 64 * MIB + 3) as reader:
        assert len(reader.read()) == MIB - 3


def test_a_flipped_byte_in_the_bucket_is_found_by_the_chunk_sums(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = store_of(s3_env)
    data = os.urandom(3 * MIB)
    blob_id = new_blob_id()
    store.put(blob_id, staged_file(tmp_path, data))
    damaged = bytearray(data)
    damaged[SUM_CHUNK + SUM_CHUNK // 2] ^= 0x01  # in chunk 1
    client = shared_moto().client()
    client.put_object(Bucket=bucket_of(s3_env), Key=store.key(blob_id), Body=bytes(damaged))

    # A read starting in the damaged chunk is refused before any byte is handed out.
    with pytest.raises(BlobDamaged) as refused:
        store.open(blob_id, SUM_CHUNK + 10)
    assert refused.value.slug == "content-damaged"
    # One starting before it gets the good chunk, then fails on reaching the bad one.
    with store.open(blob_id) as reader:
        assert reader.read(SUM_CHUNK) == data[:SUM_CHUNK]
        with pytest.raises(BlobDamaged):
            reader.read(SUM_CHUNK)
    # A truncated object is damaged at open.
    client.put_object(Bucket=bucket_of(s3_env), Key=store.key(blob_id), Body=data[:-1])
    with pytest.raises(BlobDamaged):
        store.open(blob_id)


def test_the_sweeper_listing_pairs_blobs_with_their_sums_and_names_leftovers(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = store_of(s3_env)
    bucket = bucket_of(s3_env)
    ids = sorted(new_blob_id() for _ in range(3))
    for index, blob_id in enumerate(ids):
        store.put(blob_id, staged_file(tmp_path, b"x" * (100 + index)))
    client = shared_moto().client()
    gone = new_blob_id()  # sums whose blob is gone
    client.put_object(Bucket=bucket, Key=store.sums_key(gone), Body=b"s" * 40)
    client.put_object(Bucket=bucket, Key="data/blobs/zz/not-a-blob.tmp", Body=b"half")
    client.put_object(Bucket=bucket, Key="elsewhere/blobs/aa/kept", Body=b"other prefix")

    found = list(store.stored())
    blobs = {f.blob_id: f.size for f in found if f.blob_id}
    assert blobs == {blob_id: 100 + index + 8 + 32 for index, blob_id in enumerate(ids)}
    leftovers = sorted(store.leftover_name(f) for f in found if f.blob_id is None)
    assert leftovers == sorted(["blobs/zz/not-a-blob.tmp", f"checksums/{gone[:2]}/{gone}"])
    for f in found:
        if f.blob_id is None:
            store.remove_leftover(f)
    assert [f.blob_id for f in store.stored()] == ids
    assert "elsewhere/blobs/aa/kept" in keys(s3_env)  # outside the prefix: never touched


def test_a_listing_with_many_pages_is_complete(s3_env: dict[str, str]) -> None:
    store = store_of(s3_env)
    client = shared_moto().client()
    bucket = bucket_of(s3_env)
    ids = sorted(new_blob_id() for _ in range(40))
    for blob_id in ids[::2]:  # half with sums, so the merge crosses pages on both sides
        client.put_object(Bucket=bucket, Key=store.sums_key(blob_id), Body=b"s" * 40)
    for blob_id in ids:
        client.put_object(Bucket=bucket, Key=store.key(blob_id), Body=b"b")
    store.list_page = 3
    found = list(store.stored())
    assert [f.blob_id for f in found] == ids
    assert stored_blob_ids(s3_env["DROPLINE_BLOB_URL"]) == ids
    assert [f.size for f in found] == [41 if i % 2 == 0 else 1 for i in range(len(ids))]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("s3://", "not a valid bucket name"),
        ("s3://Bad_Bucket/x", "not a valid bucket name"),
        ("s3://bucket/../up", "may hold only"),
        ("s3://bucket/a b", "may hold only"),
        ("s3://key:secret@bucket/x", "credentials never go in the URL"),
        ("s3://bucket/x?region=eu", "query"),
        ("file://relative/blobs", "local folder"),
        ("file:///a/../b", "absolute path"),
        ("gs://bucket/x", "is not file or s3"),
        ("/just/a/path", "is not file or s3"),
    ],
)
def test_a_bad_blob_url_is_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(InvalidBlobUrl) as refused:
        parse_blob_url(url)
    assert why in str(refused.value)
    assert "DROPLINE_BLOB_URL" in str(refused.value)
    assert "secret" not in str(refused.value) or "credentials" in str(refused.value)


def test_good_blob_urls_parse() -> None:
    s3 = parse_blob_url("s3://my-bucket.example/tenant-a/blobs/")
    assert (s3.scheme, s3.bucket, s3.prefix) == ("s3", "my-bucket.example", "tenant-a/blobs")
    assert parse_blob_url("s3://my-bucket").prefix == ""
    local = parse_blob_url(Path("/srv/drop line/blobs").as_uri())
    assert (local.scheme, local.path) == ("file", Path("/srv/drop line/blobs"))


def unreachable_client() -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="never-logged-secret",
        region_name="us-east-1",
    ).client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )


def test_an_unreachable_store_is_a_clear_problem_without_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = S3BlobStore("some-bucket", "data", client=unreachable_client())
    staged = staged_file(tmp_path, b"kept for a retry")
    with pytest.raises(ObjectStoreUnavailable) as failed:
        store.put(new_blob_id(), staged)
    assert failed.value.slug == "unavailable" and failed.value.status == 503
    assert failed.value.headers["Retry-After"] == "30"
    assert staged.exists()  # nothing was taken
    with pytest.raises(ObjectStoreUnavailable):
        store.open(new_blob_id())
    with pytest.raises(ObjectStoreUnavailable):
        list(store.stored())
    assert not store.reachable()
    assert "could not" in caplog.text
    assert "never-logged-secret" not in caplog.text
    assert "never-logged-secret" not in str(failed.value)


def test_a_missing_bucket_is_unavailable_not_missing(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = S3BlobStore("no-such-bucket-here", "data")
    with pytest.raises(ObjectStoreUnavailable) as failed:
        store.put(new_blob_id(), staged_file(tmp_path, b"data"))
    assert "NoSuchBucket" in failed.value.reason
    assert store_of(s3_env).reachable()


def test_the_reader_resumes_after_a_seek_back_without_reading_everything(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    store = store_of(s3_env)
    data = os.urandom(2 * MIB)
    blob_id = new_blob_id()
    store.put(blob_id, staged_file(tmp_path, data))
    with store.open(blob_id) as reader:
        assert isinstance(reader, io.BufferedReader)
        reader.seek(SUM_CHUNK + 1)
        assert reader.read(10) == data[SUM_CHUNK + 1 : SUM_CHUNK + 11]
        reader.seek(0)
        assert reader.read(10) == data[:10]


def test_several_blobs_are_put_at_once(s3_env: dict[str, str], tmp_path: Path) -> None:
    store = store_of(s3_env)
    items = [(new_blob_id(), staged_file(tmp_path, os.urandom(1000 + i))) for i in range(12)]
    store.put_many(items)
    for index, (blob_id, staged) in enumerate(items):
        assert not staged.exists()
        with store.open(blob_id) as reader:
            assert len(reader.read()) == 1000 + index
    assert len(keys(s3_env)) == 2 * len(items)
