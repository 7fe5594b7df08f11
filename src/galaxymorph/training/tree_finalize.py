"""The end of a decision-tree run: calibration, taxonomies, per-source scores and the model card.

1. The answers' temperatures, one per question, fitted on the validation fold's vote fractions
   (:func:`galaxymorph.models.tree.fit_question_temperatures`); and one for all questions
   (every source weighted equally), the card's ``temperature``.
2. Per taxonomy, an adapter fitted on validation images, and each noisy source's convention
   (:mod:`galaxymorph.models.taxonomy_fit`).
3. On the test fold, per source: vote-fraction RMSE where the source has vote columns (in its
   own weighting), and accuracy, macro F1 and ECE in the taxonomy its classes belong to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from galaxymorph.data.questions import (
    Schema,
    answer_probabilities,
    find_vote_columns,
    in_table_weighting,
)
from galaxymorph.data.taxonomies import TAXONOMIES, Taxonomy, find_taxonomy, labels_in
from galaxymorph.io_utils import write_json
from galaxymorph.models.taxonomy_fit import fit_taxonomy, taxonomy_probabilities
from galaxymorph.training.config import TrainConfig
from galaxymorph.training.finalize import (
    RunResult,
    best_network,
    run_summary,
    scoring_engine,
    source_table,
    training_data_record,
)

#: The taxonomy a tree model's ``class_names`` (and ``predict`` without ``--taxonomy``) use.
DEFAULT_TAXONOMY = "gz1-4"


def finalize_tree(run_dir: Path, cfg: TrainConfig, dm, module, best_path: str,
                  train_seconds: float, model_kwargs: dict[str, Any], epochs_run: int,
                  wall_seconds: float, lineage: dict[str, Any] | None = None) -> RunResult:
    from galaxymorph.evaluation.evaluate import dataset_logits, write_evaluation
    from galaxymorph.models.artifact import ModelCard, save_artifact
    from galaxymorph.models.calibration import source_balance
    from galaxymorph.models.tree import fit_answer_temperature, fit_question_temperatures

    schema: Schema = module.schema
    net = best_network(module, best_path)
    folds = dm.setup()
    ds = folds.dataset
    engine = scoring_engine(net, cfg)
    val_logits, val_targets = dataset_logits(engine, dm.fold_dataset("val"), tta=cfg.tta)
    val_origin = folds.origin("val")
    balance = source_balance(val_origin)
    temperature = (fit_answer_temperature(val_logits, val_targets, schema, weights=balance)
                   if cfg.calibrate and len(val_logits) else 1.0)
    temperatures = (fit_question_temperatures(val_logits, val_targets, schema)
                    if cfg.calibrate and len(val_logits) else [])
    val_answers = answer_probabilities(val_logits, schema, temperatures or temperature)
    noisy = {k for k, p in enumerate(ds.parts) if p.spec in cfg.noisy_label_sources}
    val_labels = ds.labels[folds.positions["val"]]
    taxonomies = {name: fit_taxonomy(tax, schema, val_answers, ds.class_names, val_labels,
                                     val_origin, [p.spec for p in ds.parts], noisy)
                  for name, tax in TAXONOMIES.items()}

    test_logits, _ = dataset_logits(engine, dm.fold_dataset("test"), tta=cfg.tta)
    test_answers = answer_probabilities(test_logits, schema, temperatures or temperature)
    test_pos = folds.positions["test"]
    per_source = tree_source_metrics(ds, test_pos, folds.origin("test"), test_answers, schema,
                                     taxonomies)
    summary = run_summary(run_dir, cfg, folds, net, best_path, train_seconds, epochs_run,
                          wall_seconds, temperature, lineage) | {
        "questions": schema.name, "skipped_unreadable": folds.skipped,
        "question_temperatures": dict(zip([q.name for q in schema.questions], temperatures,
                                          strict=False)),
        # Learned per noisy source and question: T[true answer][its label], its convention.
        "answer_transitions": {spec: {q.name: [[round(float(v), 4) for v in row] for row in t[g]]
                                      for q, t in zip(schema.questions,
                                                      module.question_transitions(), strict=True)}
                               for g, spec in enumerate(cfg.noisy_label_sources)}
        if module.noise_groups else {}}

    default = taxonomies[DEFAULT_TAXONOMY]
    tax = Taxonomy.from_dict(default)
    y = labels_in(tax, ds.class_names, ds.labels[test_pos])
    scored = y >= 0
    probs = taxonomy_probabilities(default, schema, test_answers[scored])
    if not scored.any():  # only vote tables: the per-source vote RMSE is the whole score
        from galaxymorph.io_utils import write_text

        metrics = {"n": 0, "accuracy": None, "f1_macro": None, "f1_weighted": None, "ece": None,
                   "split": "test", "taxonomy": tax.name, "per_source": per_source}
        write_json(run_dir / "metrics.json", metrics)
        write_text(run_dir / "report.md",
                   f"# {cfg.model} (decision tree) on {cfg.data_label}\n\n## Per source (test "
                   f"fold)\n\n{tree_source_table(per_source)}\n\n![curves.png](curves.png)\n")
    else:
        metrics = write_evaluation(
            run_dir, y[scored], np.log(np.clip(probs, 1e-12, 1.0)), list(tax.classes), 1.0,
            title=f"{cfg.model} (decision tree, {schema.name}) on {cfg.data_label}: test fold, "
                  f"{tax.name} classes",
            extra={"split": "test", "tta": cfg.tta, "taxonomy": tax.name,
                   "training_time_seconds": summary["train_seconds"], "epochs": summary["epochs"],
                   "per_source": per_source},
            threshold=(default.get("abstention") or {}).get("threshold"),
            ids=[ds.ids[int(i)] for i in test_pos[scored]],
            sections={"Per source (test fold)": tree_source_table(per_source),
                      "Run": "\n".join(f"- {k}: {v}" for k, v in summary.items())})
    write_json(run_dir / "summary.json", summary)
    training_data = training_data_record(cfg, folds)
    if lineage:
        lineage = lineage | {"finetune_data": training_data}
    card = ModelCard(
        architecture=cfg.model, class_names=list(tax.classes), image_size=cfg.image_size,
        crop=cfg.crop, framing=cfg.framing, frame_radii=cfg.frame_radii,
        temperature=temperature, model_kwargs=model_kwargs, tta_default=cfg.tta,
        name=run_dir.name,
        description=(f"fine-tuned from {lineage['parent']['name'] or cfg.init_from}; " if lineage
                     else "") + f"answers the {schema.name} decision-tree questions",
        training_data=training_data,
        training={k: summary[k] for k in ("epochs", "train_seconds", "parameters")} | {
            "pretrained": cfg.pretrained, "init_from": cfg.init_from, "transfer": cfg.transfer,
            "seed": cfg.seed},
        metrics={k: metrics[k] for k in ("n", "accuracy", "f1_macro", "f1_weighted", "ece")}
        | {"taxonomy": tax.name, "per_source": compact(per_source)},
        abstention=default.get("abstention") or {},
        lineage=lineage or {},
        questions=schema.to_dict(), taxonomies=taxonomies, default_taxonomy=DEFAULT_TAXONOMY,
        question_temperatures=temperatures,
    )
    save_artifact(run_dir, net, card)
    return RunResult(run_dir, metrics, summary)


def tree_source_metrics(ds, positions: np.ndarray, origin: np.ndarray, answers: np.ndarray,
                        schema: Schema, taxonomies: dict[str, dict]) -> dict[str, Any]:
    """Per labelled source on these images: ``vote_rmse`` (its vote columns, its weighting)
    and the classification metrics in the taxonomy its classes belong to (base convention, and
    its own convention when the card has one)."""
    from galaxymorph.data.sources import ConcatSource
    from galaxymorph.evaluation.metrics import classification_metrics, vote_rmse

    out: dict[str, Any] = {}
    known = [Taxonomy.from_dict(e) for e in taxonomies.values()]
    for k, part in enumerate(ds.parts):
        sel = origin == k
        if part.weak or not sel.any():
            continue
        entry: dict[str, Any] = {"n": int(sel.sum())}
        src, offset = ds.source, 0
        if isinstance(src, ConcatSource):
            src, offset = src.parts[k], int(src.offsets[k])
        found = find_vote_columns(src.metadata.columns) if src.metadata is not None else None
        if found:
            rows = ds.indices[positions[sel]] - offset
            entry["vote_rmse"] = vote_rmse(in_table_weighting(answers[sel], found, schema),
                                           src.metadata.iloc[rows].reset_index(drop=True))
            entry["vote_columns"] = found.convention
        labels = ds.labels[positions[sel]]
        fit = find_taxonomy(ds.class_names, sorted(set(labels.tolist())), known)
        if fit is not None:
            tax, table = fit
            y = np.asarray(table)[labels]
            e = taxonomies[tax.name]
            entry["taxonomy"] = tax.name
            entry["classes"] = _scores(classification_metrics(
                y, taxonomy_probabilities(e, schema, answers[sel]), list(tax.classes)))
            own = (e.get("conventions") or {}).get(part.spec)
            if own:
                entry["in_own_convention"] = _scores(classification_metrics(
                    y, taxonomy_probabilities(e, schema, answers[sel], own), list(tax.classes)))
        out[part.spec] = entry
    return out


def _scores(m: dict[str, Any]) -> dict[str, Any]:
    return {key: m[key] for key in ("n", "accuracy", "f1_macro", "ece", "ci95") if key in m} | {
        "per_class_recall": {c: v["recall"] for c, v in m["per_class"].items()}}


def compact(per_source: dict[str, Any]) -> dict[str, Any]:
    """The model card's short form of :func:`tree_source_metrics`."""
    out = {}
    for spec, e in per_source.items():
        row: dict[str, Any] = {"n": e["n"]}
        if "vote_rmse" in e:
            row["vote_rmse"] = e["vote_rmse"]["rmse"]
            row["vote_rmse_ci95"] = e["vote_rmse"].get("ci95")
        if "classes" in e:
            row |= {"taxonomy": e["taxonomy"], "accuracy": e["classes"]["accuracy"],
                    "accuracy_ci95": (e["classes"].get("ci95") or {}).get("accuracy"),
                    "f1_macro": e["classes"]["f1_macro"], "ece": e["classes"]["ece"]}
        if "in_own_convention" in e:
            row["accuracy_own_convention"] = e["in_own_convention"]["accuracy"]
        out[spec] = row
    return out


def tree_source_table(per_source: dict[str, Any]) -> str:
    """Markdown: the classification rows as :func:`source_table` prints them, then vote RMSE."""
    classes = {spec: e["classes"] for spec, e in per_source.items() if "classes" in e}
    parts = [source_table(classes)] if classes else []
    votes = [(spec, e["vote_rmse"]) for spec, e in per_source.items() if "vote_rmse" in e]
    if votes:
        rows = ["| source | images | vote RMSE | 95% interval | columns |", "| --- | --- | --- | --- | --- |"]
        for spec, v in votes:
            ci = v.get("ci95") or ["", ""]
            interval = f"{ci[0]:.4f} to {ci[1]:.4f}" if ci[0] != "" else ""
            rows.append(f"| {spec} | {v['n_images']} | {v['rmse']:.4f} | {interval} | {len(v['columns'])} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)
