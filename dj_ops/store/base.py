"""The one interface every result store kind implements (:mod:`dj_ops.store.kinds` picks the
kind from the ``result_store`` URL)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

from dj_ops.store.keys import FORMAT_VERSION


class StoreFormatError(RuntimeError):
    """The store was written with another key or value layout (another dj_ops version)."""


def check_format_version(found: str, where: str, fix: str) -> None:
    """Refuse a store written in another format version, naming ``fix``."""
    if found != str(FORMAT_VERSION):
        raise StoreFormatError(
            f"the result store {where} was written in format version {found}; this dj_ops "
            f"reads and writes version {FORMAT_VERSION}, whose keys differ. Give result_store "
            f"a new path ({fix} to caption again).")


class ResultStore(ABC):
    """Stored results by key (a key of :class:`~dj_ops.store.keys.ResultKeyer`; a value is a
    JSON-ready dict). Open a store in the process that uses it; close it, or use it as a
    context manager."""

    where: str  # the store's path or URL, for messages

    @abstractmethod
    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored values of those ``keys`` that are in the store."""

    @abstractmethod
    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        """Store ``items`` (key -> value); after a kill at any moment each item is either
        whole in the store or absent."""

    @abstractmethod
    def keys(self) -> Iterator[str]:
        """Every stored key (a listing: for tools and tests, never on the captioning path)."""

    def count(self) -> int:
        """How many results are stored."""
        return sum(1 for _ in self.keys())

    def close(self) -> None:
        """Release what the store holds open (nothing by default)."""

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
