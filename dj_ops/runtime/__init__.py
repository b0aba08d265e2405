"""What a job's processes do around the op's work: end with the job (``lifetime``), show progress
per video (``progress``), and end every run with a few lines (``op_run``, ``run_summary``)."""
