"""Entry point of the ``galmorph`` command.

Each area registers its sub-commands from its own module; heavy libraries are imported inside
the commands so that ``galmorph --help`` answers at once. A :class:`GalmorphError` is printed
as one clear line (with the file it concerns) and exit code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from galmorph.errors import GalmorphError

app = typer.Typer(name="galmorph", help="Galaxy morphology classification: data, training, "
                  "evaluation, GAN augmentation, real-vs-synthetic detection, prediction, web app.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


def _register() -> None:
    import importlib

    for name in ("data", "train", "predict", "gan", "detector", "app"):
        try:
            module = importlib.import_module(f"galmorph.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"galmorph.cli.{name}":
                continue  # area not built yet
            raise
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    debug = _state["debug"] or "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=False)
    except GalmorphError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
