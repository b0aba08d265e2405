"""The run report: one self-contained HTML page showing what a captioning run did.

A summary (model, settings, counts, time), charts (throughput, time split, failures, flags,
caption lengths, frames and tokens, windows) and a gallery: for each shown video the frames the
model saw beside its caption(s), flags and error, with filters. ``dj-ops-report`` builds one
from an export (:mod:`dj_ops.commands.report`); the op writes one at the end of a run when
``report_path`` is set. Modules: ``entries`` (rows to videos), ``stats`` (counts), ``sampling``
(which videos are shown), ``charts``, ``page`` (HTML), ``runlog`` (work folder and result store),
``build`` (all of it in one pass), ``op_report`` (the op's side: checked at construction,
written at the end of its run).
"""
