"""The ``galaxymorph`` command: a thin Typer layer over the Python API."""
