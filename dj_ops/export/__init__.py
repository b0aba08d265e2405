"""Readers of what ``dj-process`` writes and exporters to training-data formats."""
