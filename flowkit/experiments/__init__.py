"""Glue of the end-to-end scripts (``scripts/``), kept out of the library proper:
resumable stages with their recorded times, quality-against-NFE reports and their figures.
It sits on top of the library (beside the command line); nothing in the library imports it."""
