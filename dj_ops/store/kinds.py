"""Store kinds by the scheme of the ``result_store`` URL: the one table of them.

- a plain path, or ``sqlite://PATH``: one SQLite file (:class:`SQLiteStore`), for one machine
  (every process of that machine may share it); never on a network filesystem;
- ``file://PATH``: a folder on a filesystem every node mounts at ``PATH`` (NFS, Lustre, a
  FUSE-mounted bucket with atomic rename), shared by every node (:class:`SharedStore`);
- ``s3://BUCKET/PREFIX``: an S3 bucket (or an S3-compatible service: MinIO, Ceph, R2, ...),
  shared by every node. The URL carries no credentials: they come from the environment.
"""

from __future__ import annotations

from collections.abc import Callable

from dj_ops.store.base import ResultStore
from dj_ops.store.blobs import FolderBlobs, S3Blobs
from dj_ops.store.shared_store import SharedStore, check_shared_format
from dj_ops.store.sqlite_store import SQLiteStore, check_format

SCHEME_MARK = "://"
CREDENTIALS_HELP = (
    "the S3 store reads its credentials from the environment only (AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or the AWS config files, or an instance role), "
    "its region from AWS_REGION and an S3-compatible endpoint from AWS_ENDPOINT_URL_S3 or "
    "AWS_ENDPOINT_URL; give result_store as s3://BUCKET/PREFIX")


def _s3_blobs(location: str) -> S3Blobs:
    bucket, _, prefix = location.partition("/")
    return S3Blobs(bucket, prefix)


# scheme -> the blobs of a location (the URL without "scheme://") that every node shares
SHARED_BLOBS: dict[str, Callable[[str], object]] = {"file": FolderBlobs, "s3": _s3_blobs}
# scheme -> opener of the location; "" is a plain path
STORE_KINDS: dict[str, Callable[[str], ResultStore]] = {
    "": SQLiteStore,
    "sqlite": SQLiteStore,
    **{scheme: (lambda location, scheme=scheme: SharedStore(
        SHARED_BLOBS[scheme](location), f"{scheme}://{location}")) for scheme in SHARED_BLOBS},
}


def parse_store_url(url: str) -> tuple[str, str]:
    """``(scheme, location)`` of a ``result_store`` value, checked.

    >>> parse_store_url("outputs/store.sqlite")
    ('', 'outputs/store.sqlite')
    >>> parse_store_url("s3://bucket/captions/run1")
    ('s3', 'bucket/captions/run1')
    >>> parse_store_url("file:///mnt/shared/store")
    ('file', '/mnt/shared/store')

    :raises ValueError: for an unknown scheme, an empty location, or an S3 URL that carries
        anything besides a bucket and a prefix (credentials, a query).
    """
    if SCHEME_MARK not in url:
        return "", url
    scheme, location = url.split(SCHEME_MARK, 1)
    scheme = scheme.lower()
    if scheme not in STORE_KINDS:
        kinds = ", ".join(f"{s}://" for s in STORE_KINDS if s)
        raise ValueError(f"result_store {url!r}: unknown kind {scheme!r}; give a path (an "
                         f"SQLite file) or one of {kinds}")
    if not location.strip("/"):
        raise ValueError(f"result_store {url!r} names no {scheme} location")
    if scheme == "s3" and ("@" in location.split("/", 1)[0] or "?" in location or
                           "#" in location):
        raise ValueError(f"result_store {scheme}://...: the URL must not carry credentials "
                         f"or options; {CREDENTIALS_HELP}")
    return scheme, location


def open_store(url: str) -> ResultStore:
    """The store that ``url`` names (created when new; one of another format refused)."""
    scheme, location = parse_store_url(url)
    return STORE_KINDS[scheme](location)


def check_store(url: str) -> None:
    """Refuse a store that ``url`` names when it was written in another format, reading only:
    nothing is created or written (the process that captions opens the store and owns it).

    :raises StoreFormatError: naming the fix.
    """
    scheme, location = parse_store_url(url)
    if scheme in SHARED_BLOBS:
        check_shared_format(SHARED_BLOBS[scheme](location), url)
    else:
        check_format(location)


def shared_by_nodes(url: str) -> bool:
    """Whether processes on several machines may write the store at once."""
    return parse_store_url(url)[0] not in ("", "sqlite")
