"""``galaxymorph.train``: one function that turns a config into a finished, reproducible run folder.

RUN_DIR/
  input_config.yaml     the config file given, if any
  config.yaml           the resolved configuration (every value used)
  split.json            image ids per fold (seed and fractions recorded)
  checkpoints/          best.ckpt, last.ckpt (resume point, written atomically)
  logs/                 CSV (metrics.csv) and TensorBoard logs
  model.safetensors     best weights + model_card.json: what inference loads
  metrics.json          test-fold metrics; report.md, confusion_matrix.png, curves.png
  summary.json          training time, epochs, parameters, best validation scores
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from galaxymorph.data.unlabelled import record_used
from galaxymorph.errors import ConfigError, Interrupted
from galaxymorph.training.config import MONITORS, TrainConfig, resolve_config
from galaxymorph.training.datamodule import open_training_data
from galaxymorph.training.finalize import RunResult, finalize

log = logging.getLogger("galaxymorph")


def train(config: TrainConfig | None = None, out: str | Path = "runs/run", *,
          config_file: str | Path | None = None, resume: bool = False, **overrides: Any) -> RunResult:
    """Train a classifier and write its run folder (see module docstring).

    ``galaxymorph.train(data="catalog:gz1/labels.csv", label_map="gz1-4", model="mobilenetv2",
    pretrained=True, epochs=8, out="runs/mnv2")``. With ``resume=True`` the run continues
    from ``checkpoints/last.ckpt`` with the configuration saved in the folder.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, Timer
    from lightning.pytorch.loggers import TensorBoardLogger

    from galaxymorph.training.callbacks import (
        AtomicModelCheckpoint,
        RunInfo,
        WallClock,
        checkpoint_dir,
    )
    from galaxymorph.training.datamodule import GalaxyDataModule
    from galaxymorph.training.loggers import ResumableCSVLogger, quiet_lightning
    from galaxymorph.training.module import ClassifierModule

    run_dir = Path(out)
    last_ckpt = checkpoint_dir(run_dir) / "last.ckpt"
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("--out names a file, not a run folder", run_dir)
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise ConfigError("nothing to resume: no config.yaml in the run folder", run_dir)
        if last_ckpt.exists():
            _check_resume_point(last_ckpt)
        cfg = TrainConfig.load(run_dir / "config.yaml")
        if overrides.get("epochs"):
            cfg.epochs = int(overrides["epochs"])  # allow extending a finished run
        cfg.split_file = str(run_dir / "split.json")
        dataset = open_training_data(cfg)
    else:
        if (run_dir / "config.yaml").exists():
            raise ConfigError("run folder already holds a run; use --resume to continue it or "
                              "choose another --out", run_dir)
        cfg = config if config is not None else resolve_config(config_file, **overrides)
        from galaxymorph.models.registry import get_model_info

        if cfg.init_from:
            from galaxymorph.training.lineage import check_parent

            check_parent(cfg)  # fail on a missing or wrong parent before reading any image
        else:
            get_model_info(cfg.model)  # fail on a bad name or data before reading any image
        dataset = open_training_data(cfg)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    # Nothing goes into the run folder until every option has been checked (data, label map,
    # split file, images, weights, accelerator): a failed start must not leave a half-made run
    # that blocks the retry or that --resume would replay.
    dm = GalaxyDataModule(cfg, dataset)
    folds = dm.setup()
    class_names = dataset.class_names
    schema = None
    if cfg.questions:
        from galaxymorph.data.questions import get_schema

        schema = get_schema(cfg.questions)
    outputs = schema.answer_names if schema is not None else class_names
    lineage: dict[str, Any] = {}
    if cfg.init_from:
        from galaxymorph.training.lineage import parent_network

        net, model_kwargs, lineage = parent_network(cfg, run_dir, outputs, resume)
    else:
        net, model_kwargs = _new_network(cfg, len(outputs))
    transferred = cfg.pretrained or bool(cfg.init_from)
    common = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
                  transfer=cfg.transfer if transferred else "full",
                  # a lower backbone rate only makes sense for pretrained weights
                  backbone_lr_mult=cfg.backbone_lr_mult if transferred else 1.0,
                  scheduler=cfg.scheduler, warmup_epochs=cfg.warmup_epochs)
    if schema is not None:
        from galaxymorph.training.module import QuestionModule

        if cfg.imbalance not in ("none", "balanced-sampler"):
            log.info("a decision-tree model learns vote fractions: imbalance '%s' (a class-weighted "
                     "loss) does not apply; balanced-sampler would draw rare classes more often",
                     cfg.imbalance)
        module = QuestionModule(net, schema, noise_groups=len(cfg.noisy_label_sources),
                                noise_lr_mult=cfg.noise_lr_mult, **common)
    else:
        weights = {"weighted-loss": folds.class_weights(1.0), "both": folds.class_weights(1.0),
                   "sqrt-weighted-loss": folds.class_weights(0.5)}.get(cfg.imbalance)
        module = ClassifierModule(net, len(class_names), class_weights=weights, **common,
                                  logit_adjustment=folds.logit_adjustment(cfg.logit_tau)
                                  if cfg.imbalance == "logit-adjusted" else None,
                                  noise_groups=len(cfg.noisy_label_sources),
                                  noise_lr_mult=cfg.noise_lr_mult,
                                  consistency_weight=cfg.consistency_weight,
                                  consistency_threshold=cfg.consistency_threshold)

    mode = MONITORS[cfg.monitor]
    # Lightning's save_last only writes when `best` improved; the resume point must be every epoch.
    last_cb = AtomicModelCheckpoint(dirpath=checkpoint_dir(run_dir), filename="last",
                                    monitor=None, save_top_k=1, enable_version_counter=False)
    best_cb = AtomicModelCheckpoint(dirpath=checkpoint_dir(run_dir), filename="best",
                                    monitor=cfg.monitor, mode=mode,
                                    enable_version_counter=False) if mode else None
    timer = Timer(duration={"minutes": cfg.max_time_minutes} if cfg.max_time_minutes else None)
    clock = WallClock()
    callbacks = [*([best_cb] if best_cb else []), last_cb, timer, clock,
                 RunInfo({"config": cfg.to_dict(), "class_names": class_names,
                          "model_kwargs": model_kwargs}
                         | ({"questions": schema.to_dict()} if schema is not None else {}))]
    if cfg.early_stopping_patience > 0 and mode:
        callbacks.append(EarlyStopping(monitor=cfg.monitor, mode=mode,
                                       patience=cfg.early_stopping_patience))
    if cfg.progress:
        callbacks.append(_progress_bar())
    loggers = [ResumableCSVLogger(run_dir, name="logs", version=""),
               TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False)]
    try:
        trainer = L.Trainer(max_epochs=cfg.epochs, accelerator=cfg.accelerator,
                            devices=_devices(cfg.devices), num_nodes=cfg.num_nodes,
                            strategy=cfg.strategy, precision=cfg.precision, callbacks=callbacks,
                            logger=loggers, enable_progress_bar=cfg.progress,
                            enable_model_summary=False, log_every_n_steps=1, deterministic=False,
                            num_sanity_val_steps=0)
    except (ValueError, RuntimeError, ImportError) as exc:
        # Lightning's MisconfigurationException, or a missing backend (torch_xla for "tpu").
        raise ConfigError(f"cannot set up training on this machine: {exc}") from None
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        if config_file:
            shutil.copyfile(config_file, run_dir / "input_config.yaml")
        cfg.save(run_dir / "config.yaml")
    folds.split.save(run_dir / "split.json")
    if folds.unlabelled_files:
        record_used(run_dir, folds.unlabelled_files)
    with _interruptible(run_dir):
        trainer.fit(module, datamodule=dm,
                    ckpt_path=str(last_ckpt) if resume and last_ckpt.exists() else None,
                    weights_only=True)
    if trainer.interrupted:
        raise KeyboardInterrupt
    if not trainer.is_global_zero:
        return RunResult(run_dir, {}, {})
    best_path = best_cb.best_model_path if best_cb else ""
    if schema is not None:
        from galaxymorph.training.tree_finalize import finalize_tree

        return finalize_tree(run_dir, cfg, dm, module, best_path or str(last_ckpt),
                             train_seconds=timer.time_elapsed("train"), model_kwargs=model_kwargs,
                             epochs_run=trainer.current_epoch, wall_seconds=clock.total(),
                             lineage=lineage)
    return finalize(run_dir, cfg, dm, module, best_path or str(last_ckpt),
                    train_seconds=timer.time_elapsed("train"), model_kwargs=model_kwargs,
                    epochs_run=trainer.current_epoch, wall_seconds=clock.total(),
                    lineage=lineage)


@contextlib.contextmanager
def _interruptible(run_dir: Path):
    """Lightning turns Ctrl-C into ``sys.exit(1)`` and then ignores SIGINT; a library call
    should raise KeyboardInterrupt instead and leave the signal handler as it found it.

    SIGTERM (a batch system's pre-emption) comes out of Lightning as ``SystemExit(None)``, which
    would end the process with status 0: it becomes :class:`Interrupted` (exit status 143).
    """
    import signal
    import threading

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SIGTERMException:
        raise Interrupted("training interrupted (SIGTERM); continue with --resume (last "
                          "checkpoint kept)", run_dir, exit_code=128 + signal.SIGTERM) from None
    except SystemExit as exc:
        if exc.code == 1:
            log.warning("training interrupted; continue with --resume (last checkpoint kept)")
            raise KeyboardInterrupt from None
        raise
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)


def _check_resume_point(path: Path) -> None:
    """A damaged ``last.ckpt`` is one clear error before training starts, not a traceback from
    inside Lightning's restore."""
    import pickle

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"the resume point is unreadable ({first})", path,
                          hint="delete it to start the run over (or copy best.ckpt over it)") from None
    if not isinstance(ckpt, dict) or not {"state_dict", "epoch"} <= set(ckpt):
        raise ConfigError("the resume point is not a training checkpoint", path)


def _progress_bar():
    from lightning.pytorch.callbacks import RichProgressBar

    class Bar(RichProgressBar):
        def get_metrics(self, trainer, pl_module):  # the logger version means nothing here
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)
            return metrics

    return Bar()


def _new_network(cfg: TrainConfig, num_classes: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A registry network (from scratch or ImageNet) and the ``model_kwargs`` that rebuild it."""
    from galaxymorph.models.network import build_network
    from galaxymorph.models.registry import model_accepts

    model_kwargs: dict[str, Any] = {}
    if model_accepts(cfg.model, "image_size"):
        # Custom CNNs size their dense layers from the input; without this a 64 px run would
        # carry the dense width of the seed's 256 px input.
        model_kwargs["image_size"] = cfg.image_size
    if cfg.dropout is not None:
        model_kwargs["dropout"] = cfg.dropout
    if cfg.view != "pixels":
        model_kwargs["view"] = cfg.view
    net = build_network(cfg.model, num_classes, pretrained=cfg.pretrained,
                        **model_kwargs | ({"weights_path": cfg.weights_path} if cfg.weights_path else {}))
    return net, model_kwargs  # pretrained weights only matter at start: not in model_kwargs


def _devices(devices: str | int) -> str | int:
    s = str(devices)
    return int(s) if s.isdigit() else s
