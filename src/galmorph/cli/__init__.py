"""The ``galmorph`` command: a thin Typer layer over the Python API."""
