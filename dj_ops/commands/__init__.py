"""Command-line entry points for people who do not write recipes."""
