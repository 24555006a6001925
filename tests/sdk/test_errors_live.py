"""The server's storage problems as the SDK raises them, from a real server: a full disk
is a retryable :class:`StorageFullError` that leaves the upload resumable, and a damaged
stored copy is a :class:`ContentDamagedError` with no file written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import ContentDamagedError, StorageFullError
from dropline.sdk.resumable import download_file, upload_file
from tests.sdk.conftest import QUICK_RETRY
from tests.server.storage.test_blob_damage import blob_of, flip_bit
from tests.server.uploads.test_disk_full import fill, full_server, small_disk  # noqa: F401
from tests.support.live import LiveServer

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def test_a_full_server_disk_is_a_retryable_storage_full_error_and_the_upload_resumes(
    full_server: LiveServer,  # noqa: F811
    small_disk: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(6 * MiB))
    filler = fill(small_disk, leave=2 * MiB)
    sessions: list[str] = []
    key = ApiKeyCredentials(full_server.new_key())
    async with DroplineClient(full_server.url, key, retry=QUICK_RETRY) as api:
        with pytest.raises(StorageFullError) as raised:
            await upload_file(
                api, source, "/big.bin", chunk_size=1 * MiB, on_session=sessions.append
            )
        assert raised.value.retryable and raised.value.status == 507
        assert raised.value.problem_type == "insufficient-storage"

        filler.unlink()
        entry = await upload_file(api, source, "/big.bin", resume_url=sessions[-1])
        assert entry.size == 6 * MiB


async def test_a_damaged_stored_copy_is_a_content_damaged_error_and_writes_nothing(
    live_server: LiveServer, api: DroplineClient, tmp_path: Path
) -> None:
    source = tmp_path / "report.bin"
    source.write_bytes(os.urandom(2 * MiB))
    entry = await upload_file(api, source, "/report.bin")
    _blob_id, stored = blob_of(live_server, entry.id)
    flip_bit(stored, 10)

    dest = tmp_path / "copy.bin"
    with pytest.raises(ContentDamagedError) as raised:
        await download_file(api, entry, dest)
    assert not raised.value.retryable and raised.value.status == 500
    assert not dest.exists()
