"""The flowkit command line."""
