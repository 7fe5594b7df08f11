"""Entry point of the ``galaxymorph`` command.

Each area registers its sub-commands from its own module; heavy libraries are imported inside
the commands so that ``galaxymorph --help`` answers at once. A :class:`GalaxymorphError` is printed
as one clear line (with the file it concerns) and exit code 2 (an
:class:`~galaxymorph.errors.Interrupted` run: 128 + the signal); ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from galaxymorph.errors import GalaxymorphError

app = typer.Typer(name="galaxymorph", help="Galaxy morphology classification: data, training, "
                  "evaluation, GAN augmentation, real-vs-synthetic detection, prediction, web app.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


def _register() -> None:
    import importlib

    for name in ("data", "train", "predict", "search", "gan", "detector", "app", "cache"):
        try:
            module = importlib.import_module(f"galaxymorph.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"galaxymorph.cli.{name}":
                continue  # area not built yet
            raise
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: exit 0 on success or help, 2 on a usage or :class:`GalaxymorphError`."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _state["debug"] or "--debug" in args
    try:
        # Non-standalone so that our errors reach us; click's own errors are then ours to show.
        code = app(args=args, prog_name="galaxymorph", standalone_mode=False)
    except GalaxymorphError as exc:
        if debug:
            raise
        from rich.markup import escape

        # Escaped: a path like data/[v2]/x.csv must not be eaten as Rich markup, and
        # emoji=False: a spec such as "nosuch:x:" must not turn into an emoji either.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True, emoji=False)
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        sys.exit(_click_exit(exc))
    # typer.Exit(n) / ctx.exit(n) come back as a return value in non-standalone mode.
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def _click_exit(exc: Exception) -> int:
    """Show a click/typer usage error as standalone mode would and return its exit code.

    Matched by class name because typer now vendors its own click (``typer._click``), so
    ``click.ClickException`` is not the class that it raises; anything else is re-raised.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NoArgsIsHelpError" in names:
        # A group called without a sub-command: its help is the answer, not an error.
        text = exc.format_message() if hasattr(exc, "format_message") else ""
        if text.strip():  # plain (non-rich) mode returns the help instead of printing it
            print(text)
        return 0
    if "ClickException" in names:
        try:
            from typer import rich_utils

            rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        except Exception:
            exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    if "Abort" in names:
        err_console.print("[yellow]aborted[/]")
        return 1
    raise exc


if __name__ == "__main__":
    main()
