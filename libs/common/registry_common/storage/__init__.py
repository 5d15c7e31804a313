"""Object storage: the interface (base), the key layout, and the filesystem and GCS backends."""

from __future__ import annotations

from registry_common.settings import Settings
from registry_common.storage.base import ObjectStore
from registry_common.storage.filesystem import FilesystemStore


def create_object_store(settings: Settings) -> ObjectStore:
    """GCS when BUCKET_NAME is set, else the filesystem at STORAGE_PATH (created if missing).

    Call it at start-up: it may create a directory or look up GCS credentials.
    """
    if settings.bucket_name:
        # google-cloud-storage takes half a second to import; filesystem mode never needs it.
        from registry_common.storage.gcs import GcsStore  # noqa: PLC0415 - costly, GCS only

        return GcsStore(settings.bucket_name)
    settings.check_storage()
    assert settings.storage_path is not None
    settings.storage_path.mkdir(parents=True, exist_ok=True)
    return FilesystemStore(settings.storage_path)
