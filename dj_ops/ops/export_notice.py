"""What a ``dj-process`` user must be told about where the op's records end up.

Data-Juicer's exporter leaves ``Fields.meta`` out of the export unless the recipe sets
``keep_stats_in_res_ds: true``; it then writes it to ``<export>_stats.jsonl`` (when
``export_stats`` is on) or nowhere. The op's error records live in ``Fields.meta``, so without
that setting a failed row kept with ``on_error: keep`` looks exactly like a kept original in the
export. Data-Juicer gives ops no way to keep one field, so the op says so, loudly, naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportTarget:
    """Where the exporter writes the rows and the meta field."""

    export_path: str
    keeps_meta: bool  # the meta field stays in the export's rows
    stats_path: str | None  # where the meta field goes otherwise (None: nowhere)

    @classmethod
    def of(cls, exporter) -> ExportTarget | None:
        """The target of Data-Juicer's ``Exporter`` (None when there is no export)."""
        if exporter is None or not getattr(exporter, "export_ds", True):
            return None
        path = str(exporter.export_path)
        keeps = bool(getattr(exporter, "keep_stats_in_res_ds", False))
        suffix = getattr(exporter, "suffix", "jsonl")
        stats = path.replace(f".{suffix}", "_stats.jsonl") if getattr(
            exporter, "export_stats", True) else None
        return cls(path, keeps, stats)

    def records_elsewhere(self) -> str:
        """The warning for a run whose export will not hold the records ('' if it will)."""
        if self.keeps_meta:
            return ""
        where = f"they go to {self.stats_path}" if self.stats_path else "they are not written"
        return (f"keep_stats_in_res_ds is false: the export {self.export_path} will not hold "
                f"__dj__meta__ (caption provenance and per-sample error records; {where}), so a "
                "failed row will look like a kept original there. Set "
                "`keep_stats_in_res_ds: true` in the recipe to keep them in the export.")

    def summary(self, captioned: int, failed: int) -> str:
        """The end-of-op line: counts, and where to find the output and the records."""
        records = ("records in it" if self.keeps_meta else
                   f"records in {self.stats_path}" if self.stats_path else "records not written")
        line = (f"{captioned} rows captioned, {failed} failed; output: {self.export_path} "
                f"({records})")
        if failed and not self.keeps_meta:
            line += ("; the failed rows look like kept originals there: set "
                     "`keep_stats_in_res_ds: true` to mark them")
        return line
