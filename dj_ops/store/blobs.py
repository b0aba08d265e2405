"""Named byte blobs on shared storage, written whole: a folder on a shared filesystem, or an S3
bucket. The shared result store (:mod:`dj_ops.store.shared_store`) is built on either.

Both kinds share three operations and one guarantee: ``write`` replaces a blob atomically (a
reader sees the old blob, or none, or the whole new one, never part of it), with no lock:

- a folder: the bytes go to a temporary name beside the blob (``.NAME.RANDOM.tmp``), then
  ``os.replace`` renames it over the blob (atomic on POSIX filesystems and NFS within one
  folder). A writer killed mid-write leaves only its temporary file, which nothing reads;
- S3: one ``PutObject`` per blob; S3 makes an object visible only once it is whole, and
  readers see it at once (strong read-after-write). pyarrow 26 writes every stream as a
  multipart upload (3 requests, and an unfinished upload left behind by a killed writer)
  unless the file system allows a delayed open: then a small blob is one ``PutObject``
  (counted on the loopback server). A read is a ``HeadObject`` and a ``GetObject``; a missing
  blob one ``HeadObject``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

TEMP_SUFFIX = ".tmp"
# The endpoint of an S3-compatible service, by the names the AWS SDKs and CLI read; pyarrow 26
# reads neither (measured: it resolved bucket.s3.us-east-1.amazonaws.com), so they are passed.
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def is_temporary(name: str) -> bool:
    """A blob being written (a folder's temporary name), not a blob."""
    return os.path.basename(name).startswith(".") and name.endswith(TEMP_SUFFIX)


class FolderBlobs:
    """Blobs as files under ``root`` (``a/b/c.json`` is ``root/a/b/c.json``)."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def read(self, name: str) -> bytes | None:
        try:
            with open(os.path.join(self.root, name), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        path = os.path.join(self.root, name)
        folder, base = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".{base}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
        try:
            with open(temporary, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise

    def names(self, prefix: str) -> Iterator[str]:
        """Every blob under ``prefix`` (a folder name), recursively."""
        top = os.path.join(self.root, prefix)
        for folder, _, files in os.walk(top):
            for file in files:
                name = os.path.relpath(os.path.join(folder, file), self.root)
                if not is_temporary(name):
                    yield name


class S3Blobs:
    """Blobs as objects ``bucket/prefix/NAME`` through pyarrow's S3 client (the one Ray Data
    and Data-Juicer use for ``s3://`` datasets; no other dependency).

    Credentials come from the environment only, through the AWS SDK's usual chain
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``; ``~/.aws`` files;
    an instance role); the region from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``; an
    S3-compatible endpoint from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``.
    """

    def __init__(self, bucket: str, prefix: str):
        from pyarrow import fs

        self.base = "/".join(part for part in (bucket, prefix.strip("/")) if part)
        endpoint = next((os.environ[n] for n in ENDPOINT_ENV if os.environ.get(n)), None)
        self._fs = fs.S3FileSystem(endpoint_override=endpoint, allow_delayed_open=True)
        self._selector = fs.FileSelector
        self._file_type = fs.FileType.File

    def read(self, name: str) -> bytes | None:
        try:
            with self._fs.open_input_stream(f"{self.base}/{name}") as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        with self._fs.open_output_stream(f"{self.base}/{name}") as stream:
            stream.write(data)

    def names(self, prefix: str) -> Iterator[str]:
        """Every object under ``prefix``, recursively (one LIST per 1,000 objects)."""
        selector = self._selector(f"{self.base}/{prefix}", recursive=True, allow_not_found=True)
        for info in self._fs.get_file_info(selector):
            if info.type == self._file_type:
                yield info.path[len(self.base) + 1:]
