"""``galaxymorph app``: the Streamlit web app."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("app")(app_cmd)


def app_cmd(
    model: str = typer.Option("default", "--model", help="default | RUN_DIR | CHECKPOINT"),
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on (0.0.0.0 exposes the app to the network)."),
    detector: str = typer.Option(None, "--detector", help="Real-vs-synthetic detector run folder."),
    models_dir: Path = typer.Option(None, "--models-dir",
                                    help="Folder of run folders to offer as further models."),
    examples: Path = typer.Option(None, "--examples",
                                  help="Folder of images for the example gallery (default: rendered "
                                       "synthetic galaxies)."),
    max_upload_mb: int = typer.Option(20, "--max-upload-mb", help="Largest upload accepted, in MB."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps"),
    index: Path = typer.Option(None, "--index",
                               help="Similarity index folder (galaxymorph index build) for the "
                                    "'Similar galaxies' panel."),
) -> None:
    """Start the web app: upload galaxy images, see class probabilities and Grad-CAM."""
    from galaxymorph.app.core import AppSettings, default_installed
    from galaxymorph.app.launcher import launch, resolve_ref
    from galaxymorph.errors import ConfigError, ModelError

    if not 1 <= port <= 65535:
        raise ConfigError(f"port must be within 1..65535, got {port}")
    if max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb must be at least 1, got {max_upload_mb}")
    for ref, what in ((model, "model"), (detector, "detector")):
        if ref and ref != "default" and not Path(ref).expanduser().exists():
            raise ModelError(f"no such {what} folder or checkpoint", ref)
    for folder, what in ((models_dir, "--models-dir"), (examples, "--examples"), (index, "--index")):
        if folder is not None and not folder.is_dir():
            raise ConfigError(f"{what} folder not found", folder)
    if model == "default" and not default_installed():
        err_console.print("[yellow]warning:[/] the built-in default model is not installed; the page "
                          "will say so. Pass --model RUN_DIR to use a trained run.")
    settings = AppSettings(model=resolve_ref(model) or "default", detector=resolve_ref(detector),
                           models_dir=str(models_dir.resolve()) if models_dir else None,
                           examples=str(examples.resolve()) if examples else None,
                           max_upload_mb=max_upload_mb, device=device,
                           index=str(index.resolve()) if index else None)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    err_console.print(f"galaxymorph app on [bold]http://{shown}:{port}[/] (Ctrl-C to stop)")
    code = launch(settings, host=host, port=port)
    if code:
        raise typer.Exit(code)
