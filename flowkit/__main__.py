"""``python -m flowkit`` is the ``flowkit`` command."""

from flowkit.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
