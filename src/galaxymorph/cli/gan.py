"""``galaxymorph gan train|sample|gallery`` and ``galaxymorph fid``: thin wrappers over
:mod:`galaxymorph.generative`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console()

gan_app = typer.Typer(name="gan", help="Class-conditional GAN: train, sample a catalog, gallery.",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(gan_app, name="gan")
    app.command("fid")(fid_cmd)


def _split_names(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


@gan_app.command("train")
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder to create (or resume)."),
    data: str = typer.Option(None, "--data", help="Dataset spec, e.g. ../shared/data/gz1"),
    label_map: str = typer.Option(None, "--label-map", help="Built-in name (gz1-4) or YAML/JSON file."),
    classes: list[str] = typer.Option(None, "--classes", help="Model only these classes (names; "
                                      "comma list or repeated). Samples keep the dataset's labels."),
    image_size: int = typer.Option(None, "--image-size", help="32, 64 (default) or 128."),
    crop: float = typer.Option(None, "--crop", help="Centre crop, fraction of the side (GZ1: 0.5)."),
    epochs: int = typer.Option(None, "--epochs", help="Total epochs (with --resume: the new target)."),
    batch_size: int = typer.Option(None, "--batch-size"),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch",
                                        help="Default: images / batch size."),
    g_channels: int = typer.Option(None, "--g-channels", help="Generator width (default 32)."),
    d_channels: int = typer.Option(None, "--d-channels", help="Discriminator width (default 32)."),
    loss: str = typer.Option(None, "--loss", help="hinge (default) | nonsat"),
    d_steps: int = typer.Option(None, "--d-steps", help="Discriminator updates per generator update."),
    lr_g: float = typer.Option(None, "--lr-g"),
    lr_d: float = typer.Option(None, "--lr-d"),
    beta1: float = typer.Option(None, "--beta1", help="Adam beta1 of both networks."),
    beta2: float = typer.Option(None, "--beta2", help="Adam beta2 of both networks."),
    ema_decay: float = typer.Option(None, "--ema-decay"),
    diffaugment: str = typer.Option(None, "--diffaugment",
                                    help="Comma list of color,translation,cutout, or none."),
    symmetry: bool = typer.Option(None, "--symmetry/--no-symmetry",
                                  help="Random rotations/flips of real images (default on)."),
    class_balance: float = typer.Option(None, "--class-balance",
                                        help="1: classes drawn equally often (default); 0: natural."),
    sample_every: int = typer.Option(None, "--sample-every", help="Epochs between sample grids."),
    max_images: int = typer.Option(None, "--max-images", help="Train on a random subset."),
    split_file: str = typer.Option(None, "--split-file",
                                   help="A classifier run's split.json: train on one of its folds "
                                        "only (for augmentation experiments: its training fold)."),
    fold: str = typer.Option(None, "--fold", help="Fold of --split-file (default train)."),
    seed: int = typer.Option(None, "--seed"),
    device: str = typer.Option(None, "--device", help="auto (default) | cpu | cuda"),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
    max_minutes: float = typer.Option(None, "--max-minutes",
                                      help="Stop at the first epoch end after this long."),
    cache: bool = typer.Option(None, "--cache/--no-cache", help="Decode-once image cache."),
    config: Path = typer.Option(None, "--config", help="YAML of GAN settings; flags override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a class-conditional GAN; writes checkpoints, losses, sample grids, generator."""
    from galaxymorph.generative.config import GanConfig
    from galaxymorph.generative.trainer import train_gan

    overrides: dict[str, Any] = {
        "data": data, "label_map": label_map, "classes": _split_names(classes),
        "image_size": image_size, "crop": crop, "epochs": epochs, "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch, "g_channels": g_channels, "d_channels": d_channels,
        "loss": loss, "d_steps": d_steps, "lr_g": lr_g, "lr_d": lr_d, "beta1": beta1, "beta2": beta2, "ema_decay": ema_decay,
        "diffaugment": diffaugment, "symmetry": symmetry, "class_balance": class_balance,
        "sample_every": sample_every, "max_images": max_images, "split_file": split_file, "fold": fold, "seed": seed, "device": device,
        "threads": threads, "max_minutes": max_minutes, "cache": cache}
    given = {k: v for k, v in overrides.items() if v is not None}
    if resume:
        from galaxymorph.generative.config import RESUME_OVERRIDES

        ignored = sorted(set(given) - set(RESUME_OVERRIDES))
        if ignored:
            console.print(f"[yellow]--resume uses the run's saved config; ignoring "
                          f"{', '.join('--' + k.replace('_', '-') for k in ignored)}[/]")
        keep = {k: v for k, v in given.items() if k in RESUME_OVERRIDES}
        summary = train_gan(out, resume=True, overrides=keep, progress=progress, echo=console.print)
    else:
        base = _read_config(config) if config else {}
        cfg = GanConfig.from_dict({**base, **given})
        summary = train_gan(out, cfg, progress=progress, echo=console.print)
    rate = summary.get("imgs_per_s")
    console.print(f"done: {summary['epochs']} epochs, {summary['steps']} steps"
                  + (f", {rate:.0f} real images/s" if rate else "")
                  + f"; generator in [bold]{out}[/] (generator.safetensors, gan_card.json, samples/)")


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    from galaxymorph.errors import ConfigError

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read GAN config ({exc})", path) from exc
    if not isinstance(raw, dict):
        raise ConfigError("a GAN config is a mapping of settings", path)
    return raw


@gan_app.command("sample")
def sample_cmd(
    run_dir: Path = typer.Argument(..., help="A GAN run folder."),
    n: int = typer.Option(..., "--n", help="Images per class (or of the one --class)."),
    out: Path = typer.Option(..., "--out", help="Folder for images/ and labels.csv."),
    class_name: str = typer.Option(None, "--class", help="Only this class (name)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing labels.csv."),
) -> None:
    """Generate PNGs plus a labels.csv, so the set is itself a `catalog:` dataset."""
    from galaxymorph.generative.sampling import sample

    csv_path = sample(run_dir, out, n, class_name=class_name, seed=seed, device=device,
                      overwrite=overwrite)
    console.print(f"wrote {csv_path}; use it as [bold]catalog:{csv_path}[/]")


@gan_app.command("gallery")
def gallery_cmd(
    run_dir: Path = typer.Argument(..., help="A GAN run folder."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    data: str = typer.Option(None, "--data", help="Real images (default: the GAN's training data)."),
    label_map: str = typer.Option(None, "--label-map"),
    n: int = typer.Option(8, "--n", help="Images per class on each side."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Real and generated images side by side, one row per class."""
    from galaxymorph.generative.gallery import gallery

    path = gallery(run_dir, out, data=data, label_map=label_map, n=n, seed=seed)
    console.print(f"wrote {path}")


def fid_cmd(
    real: str = typer.Option(..., "--real", help="Real dataset spec."),
    fake: str = typer.Option(..., "--fake", help="Generated dataset spec (e.g. catalog:OUT/labels.csv)."),
    features: str = typer.Option("inception", "--features", help="inception | classifier:RUN_DIR"),
    per_class: bool = typer.Option(False, "--per-class", help="Also one score per class (by name)."),
    n: int = typer.Option(None, "--n", help="At most N random images from each set."),
    label_map: str = typer.Option(None, "--label-map", help="Label map of the real set."),
    fake_label_map: str = typer.Option(None, "--fake-label-map", help="Label map of the fake set."),
    image_size: int = typer.Option(64, "--image-size", help="Both sets are resized to this first."),
    crop: float = typer.Option(1.0, "--crop", help="Centre crop of the real images (GZ1 GAN: 0.5)."),
    fake_crop: float = typer.Option(1.0, "--fake-crop", help="Centre crop of the fake images."),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto (GPU if any) | cpu | cuda"),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Recompute the overall FID with scipy's sqrtm (slow at 2048-d)."),
    json_out: Path = typer.Option(None, "--json", help="Also write the result as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fréchet distance between a real and a generated set, with a real-vs-real baseline."""
    from galaxymorph.generative.fid import fid
    from galaxymorph.io_utils import write_json

    result = fid(real, fake, features=features, per_class=per_class, n=n, label_map=label_map,
                 fake_label_map=fake_label_map, image_size=image_size, crop=crop,
                 fake_crop=fake_crop, batch_size=batch_size, seed=seed, check=check,
                 device=device, progress=progress)
    _print_fid(result)
    if json_out:
        write_json(json_out, result)
        console.print(f"wrote {json_out}")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _print_fid(r: dict[str, Any]) -> None:
    from rich.table import Table

    base = r.get("baseline") or {}
    table = Table(title=f"FID ({r['features']}, {r['dim']}-d, {r['image_size']} px)")
    for col in ("set", "n real", "n fake", "FID", "real-vs-real baseline"):
        table.add_column(col, justify="left" if col == "set" else "right")
    table.add_row("all", str(r["n_real"]), str(r["n_fake"]), _fmt(r["fid"]),
                  f"{_fmt(base.get('fid'))} ({base.get('n_a', 0)} vs {base.get('n_b', 0)})")
    for name, row in (r.get("per_class") or {}).items():
        table.add_row(name, str(row["n_real"]), str(row["n_fake"]), _fmt(row["fid"]),
                      f"{_fmt(row.get('baseline'))} ({row.get('baseline_n', 0)} each)")
    console.print(table)
    if "fid_scipy" in r:
        console.print(f"check: scipy sqrtm gives {r['fid_scipy']:.4f} on the same statistics "
                      f"(torchmetrics {r['fid']:.4f})")
    console.print("[dim]FID grows as sets get smaller; compare numbers at equal set sizes.[/]")
