"""``galaxymorph detector train|calibrate|evaluate|predict``: thin wrappers over :mod:`galaxymorph.detection`.

``predict`` exits 0 when at least one image was scored (unreadable ones are listed and
counted), 1 when none could be, and 2 (like every command) on a bad run folder or option.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()

detector_app = typer.Typer(name="detector", no_args_is_help=True,
                           help="Real-vs-synthetic detector: train, calibrate, evaluate, predict.")


def register(app: typer.Typer) -> None:
    app.add_typer(detector_app, name="detector")


def _common_size(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return "auto"
    if value.lower() in ("none", "0", "off"):
        return None
    if not value.isdigit():
        from galaxymorph.errors import ConfigError

        raise ConfigError(f"--common-size must be auto, none or a number of pixels, got '{value}'")
    return int(value)


def _families(value: str) -> list[str] | str:
    if value == "auto":
        return "auto"
    if value.lower() in ("none", "off", ""):
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


@detector_app.command("train")
def train_cmd(
    real: list[str] = typer.Option(..., "--real", help="Dataset spec of real images; repeatable."),
    fake: list[str] = typer.Option(..., "--fake", help="Generated images: a catalog spec, a GAN "
                                   "sample folder or any folder of images; repeatable."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (or resume)."),
    model: str = typer.Option("seed-detector", "--model",
                              help="Registry name: seed-detector (the seed's CNN), resnet18, ..."),
    pretrained: bool = typer.Option(False, "--pretrained/--scratch", help="ImageNet weights."),
    image_size: int = typer.Option(64, "--image-size", help="Network input side (the seed: 150)."),
    common_size: str = typer.Option("auto", "--common-size",
                                    help="Resolution every image passes through: auto (smallest "
                                    "native size among the sources), N pixels, or none."),
    real_crop: float = typer.Option(None, "--real-crop", help="Centre crop of real images "
                                    "(default: the GAN's training crop if known, else 1)."),
    fake_crop: float = typer.Option(1.0, "--fake-crop", help="Centre crop of generated images."),
    cap: int = typer.Option(None, "--per-source-cap", help="At most N images from each spec."),
    max_per_side: int = typer.Option(None, "--max-per-side", help="At most N images per class."),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs (default 50)."),
    patience: int = typer.Option(5, "--patience", help="Early-stopping patience (0: off)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = typer.Option(0, "--seed", help="Sampling, split and initialisation seed."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch."),
    accelerator: str = typer.Option(None, "--accelerator", help="auto | cpu | gpu | mps"),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Stop training after this long."),
    auto_fakes: str = typer.Option("auto", "--auto-fakes",
                                   help="Generator families added to the synthetic side: auto "
                                   "(renderer,eigengalaxy when one --fake is given), none, or a "
                                   "comma list of renderer, eigengalaxy, resynth, gan:RUN_DIR."),
    augment: bool = typer.Option(False, "--augment/--no-augment",
                                 help="Blur, JPEG and resampling on both classes alike (off: "
                                 "it lowered held-out-generator accuracy, docs/detector.md)."),
    compress_fakes: float = typer.Option(0.0, "--compress-fakes",
                                         help="Share of the generated training images saved "
                                         "as JPEG (quality 50-95) before resampling, so that a "
                                         "fake saved as JPEG is still caught; 0: none."),
    screen_real: bool = typer.Option(True, "--screen-real/--no-screen-real",
                                     help="Leave real images that are not galaxy cutouts "
                                     "(blank, nothing at the centre) out of the real side, as "
                                     "'galaxymorph data check' lists them."),
    false_alarm: float = typer.Option(0.01, "--false-alarm",
                                      help="Share of real validation images the threshold may "
                                      "flag as synthetic."),
    calibration_real: int = typer.Option(4000, "--calibration-real",
                                         help="Real images beyond the balanced training set, "
                                         "never trained on, to set the thresholds on (with the "
                                         "validation fold's; with the noise statistics, every "
                                         "other one joins their reference); 0: the validation "
                                         "fold alone."),
    atypicality: str = typer.Option("statistics", "--atypicality",
                                    help="What the fake-free score measures distances in: "
                                    "features (the network's), features+statistics (also the "
                                    "images' noise statistics; the larger percentile) or "
                                    "statistics (the noise statistics alone)."),
    statistics_head: bool = typer.Option(True, "--statistics-head/--no-statistics-head",
                                         help="Also a logistic head on the images' noise "
                                         "statistics, fitted on the training images: "
                                         "p(synthetic) is the network's or the head's, so every "
                                         "generator trained on is caught."),
    verdict: str = typer.Option("combined", "--verdict",
                                help="combined: one calibrated score over the network, the "
                                "statistics head and the atypicality, thresholded at "
                                "--false-alarm on real images; either (the earlier default): "
                                "p(synthetic) or atypicality, each at half the rate; "
                                "p_synthetic: p(synthetic) alone."),
    view: str = typer.Option("pixels", "--view", help="What the network sees: pixels, "
                             "frequency (whitened log-amplitude spectrum, where upsampling "
                             "artefacts show) or both (6 channels)."),
    backbone: str = typer.Option(None, "--backbone", help="Freeze a pretrained network and "
                                 "train a linear head on its features: imagenet (--model's local "
                                 "ImageNet weights; mobilenetv2 by default), default (the "
                                 "built-in morphology model) or a model folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Assemble balanced real vs generated images and train a detector on them."""
    from galaxymorph.detection import train_detector

    options = {k: v for k, v in dict(threads=threads, accelerator=accelerator,
                                     max_time_minutes=max_minutes).items() if v is not None}
    run = train_detector(real, fake, out, model=model, pretrained=pretrained, image_size=image_size,
                         common_size=_common_size(common_size), real_crop=real_crop,
                         fake_crop=fake_crop, per_source_cap=cap, max_per_side=max_per_side,
                         epochs=epochs, patience=patience, batch_size=batch_size, lr=lr, seed=seed,
                         auto_fakes=_families(auto_fakes), augment=augment,
                         compress_fakes=compress_fakes, screen_real=screen_real,
                         false_alarm=false_alarm, verdict=verdict,
                         calibration_real=calibration_real, atypicality=atypicality, view=view,
                         statistics_head=statistics_head, backbone=backbone, resume=resume,
                         **options)
    _print_metrics(run.metrics, f"held-out test fold of {run.run_dir}")
    _warn_few_real(run.run_dir)
    console.print(f"run folder: [bold]{run.run_dir}[/] (detector_metrics.json, curves.png, "
                  "batch_accuracy.png, model.safetensors)")


def _warn_few_real(run_dir: Path) -> None:
    """Too few real validation images for the false-alarm target: say so, with what would do."""
    from galaxymorph.detection.detector import read_detector_info

    rule = read_detector_info(run_dir).get("threshold_rule")
    rule = rule if isinstance(rule, dict) else {}
    target, expected = rule.get("false_alarm_target"), rule.get("expected_false_alarm")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (target, expected))
    if numbers and expected > target + 1e-12:
        console.print(f"[yellow]warning:[/] the threshold was set on {rule.get('n_real')} real "
                      f"validation images: on new real images it will flag about {expected:.1%} "
                      f"(target {target:.1%}); at least {rule.get('real_needed')} real images in the "
                      "validation fold reach the target (give more --real images)")


@detector_app.command("calibrate")
def calibrate_cmd(
    run_dir: Path = typer.Argument(..., help="Detector run folder."),
    verdict: str = typer.Option(None, "--verdict", help="The decision rule: combined (the one "
                                "verdict), either or p_synthetic (default: the folder's own)."),
    false_alarm: float = typer.Option(None, "--false-alarm", help="Target share of real images "
                                      "flagged (default: the folder's own)."),
) -> None:
    """Fit a trained detector's references and decision rule again, without training its
    network: gives a detector trained before the one verdict that verdict, or another
    false-alarm rate. The threshold is set on real images only."""
    from galaxymorph.detection import recalibrate_detector

    run = recalibrate_detector(run_dir, verdict=verdict, false_alarm=false_alarm)
    _print_metrics(run.metrics, f"{run_dir}: test fold")
    console.print(f"written to [bold]{run_dir}[/]")


@detector_app.command("evaluate")
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="Detector run folder."),
    real: list[str] = typer.Option(..., "--real", help="Dataset spec of real images; repeatable."),
    fake: list[str] = typer.Option(..., "--fake", help="Generated images; repeatable."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json and figures."),
    real_crop: float = typer.Option(None, "--real-crop", help="Default: as in training."),
    fake_crop: float = typer.Option(None, "--fake-crop", help="Default: as in training."),
    cap: int = typer.Option(None, "--per-source-cap"),
    max_per_side: int = typer.Option(None, "--max-per-side"),
    balance: bool = typer.Option(True, "--balance/--no-balance",
                                 help="Equal real and generated counts."),
    exclude_training: bool = typer.Option(True, "--exclude-training/--trust-held-out",
                                          help="Leave out images of groups the detector trained on "
                                          "(default), or take the specs as held out."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto"),
    screen_real: bool = typer.Option(None, "--screen-real/--no-screen-real",
                                     help="Leave real images that are no galaxy cutouts out "
                                     "(default: as the detector was trained)."),
) -> None:
    """Score a detector: metrics.json (accuracy at its threshold, ROC AUC, AP, false alarms on real images, per source), predictions.csv, figures.

    Images of groups the detector trained on are left out unless --trust-held-out.
    """
    from galaxymorph.detection import evaluate_detector

    metrics = evaluate_detector(run_dir, real, fake, out, real_crop=real_crop, fake_crop=fake_crop,
                                per_source_cap=cap, max_per_side=max_per_side, balance=balance,
                                exclude_training=exclude_training, seed=seed, device=device,
                                screen_real=screen_real)
    _print_metrics(metrics, f"{run_dir} on {', '.join(real + fake)}")
    console.print(f"{metrics['held_out']} ({metrics['excluded_training_images']} left out)")
    console.print(f"written to [bold]{out}[/]")


@detector_app.command("predict")
def predict_cmd(
    run_dir: Path = typer.Argument(..., help="Detector run folder."),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    crop: float = typer.Option(None, "--crop", help="Centre crop of the inputs (default: the "
                               "detector's, as its real training images were framed; the same "
                               "as predict --detector and the app)."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """The detector's verdict per image: its one score, what flagged it, and the parts."""
    from rich.markup import escape
    from rich.table import Table

    from galaxymorph.detection import predict_detector

    results = predict_detector(run_dir, images, crop=crop, device=device)
    table = Table("image", "synthetic score", "verdict", "flagged by", "p(network)",
                  "p(statistics)", "atypicality")
    for r in results:
        if r["error"]:
            table.add_row(escape(r["path"]), "-", "[red]unreadable[/]", "-", "-", "-", "-")
        else:
            table.add_row(escape(r["path"]), _fmt(r["synthetic_score"]), r["verdict"],
                          (r["flagged_by"] or "-").replace(",", ", "), _fmt(r["p_network"]),
                          _fmt(r["p_statistics"]), _fmt(r["atypicality"], 3))
    console.print(table)
    failed = [r for r in results if r["error"]]
    for r in failed:
        console.print(f"[red]unreadable:[/] {escape(r['error'])}", highlight=False, soft_wrap=True)
    if failed:
        console.print(f"{len(failed)} of {len(results)} file(s) could not be read")
    if results and len(failed) == len(results):
        raise typer.Exit(1)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_metrics(m: dict, title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    parts = m.get("parts") or {}
    for col in ("n", "threshold", "accuracy", "ROC AUC", "AP", "false alarms (real)", "recall",
                *(f"{name} AUC" for name in parts)):
        table.add_column(col, justify="right")
    table.add_row(str(m["n"]), _fmt(m["threshold"]), _fmt(m["accuracy"]), _fmt(m.get("roc_auc")),
                  _fmt(m.get("average_precision")), _fmt(m.get("false_alarm_rate")),
                  _fmt(m["recall"]), *(_fmt(v.get("roc_auc")) for v in parts.values()))
    console.print(table)
    per = m.get("per_source", {})
    if per:
        src = Table(title="per source (a generated source against all real images; the score's "
                    "AUC, and which part flagged its images)")
        src.add_column("source", overflow="fold")
        for col in ("class", "n", "accuracy", "ROC AUC", "AP", "caught / false alarms",
                    "mean score", "flagged by", "seen in training"):
            src.add_column(col)
        for name, s in per.items():
            seen = s.get("seen_in_training")
            rate = s.get("recall", s.get("false_alarm_rate"))
            by = ", ".join(f"{k} {v:.0%}" for k, v in (s.get("flagged_by") or {}).items() if v)
            src.add_row(escape(name), s["label"], str(s["n"]), _fmt(s["accuracy"]),
                        _fmt(s.get("roc_auc")), _fmt(s.get("average_precision")), _fmt(rate),
                        _fmt(s["mean_synthetic_score"], 3), by or "-",
                        "-" if seen is None else str(seen).lower())
        console.print(src)
    for note in m.get("notes") or []:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
