"""The train / evaluate / compare / models commands through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from galaxymorph.cli.main import main


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


def test_evaluate_writes_metrics_on_the_saved_test_fold(tiny_model, tmp_path, capsys):
    code, text = run_cli(["evaluate", "--model", str(tiny_model), "--out", str(tmp_path / "ev"),
                          "--tta"], capsys)
    assert code == 0, text
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    split = json.loads((tiny_model / "split.json").read_text())
    assert metrics["n"] == len(split["test"]) and metrics["tta"] is True
    assert (tmp_path / "ev" / "confusion_matrix.png").exists()
    assert (tmp_path / "ev" / "report.md").read_text().startswith("# ")
    code, text = run_cli(["evaluate", "--model", str(tiny_model), "--split", "all",
                          "--out", str(tmp_path / "all")], capsys)
    assert code == 0, text
    # The model's own training/validation images are left out unless asked for.
    assert "left out" in text
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["n"] == len(split["test"])
    code, text = run_cli(["evaluate", "--model", str(tiny_model), "--split", "all", "--include-seen",
                          "--out", str(tmp_path / "seen")], capsys)
    assert code == 0, text
    assert json.loads((tmp_path / "seen" / "metrics.json").read_text())["n"] == sum(
        len(split[f]) for f in ("train", "val", "test"))


def test_compare_and_models_commands(tiny_model, tmp_path, capsys):
    code, text = run_cli(["compare", str(tiny_model), "--out", str(tmp_path / "c.md")], capsys)
    assert code == 0 and "| tiny | cnn2 |" in (tmp_path / "c.md").read_text()
    code, text = run_cli(["models"], capsys)
    assert code == 0 and "cnn4-wide" in text and "mobilenetv2" in text


@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "nowhere.csv", "--out", "{tmp}/r"], "nowhere.csv"),
    (["train", "--data", "{catalog}", "--model", "alexnet9", "--out", "{tmp}/r2"], "cnn4-wide"),
    (["evaluate", "--model", "{tmp}/missing_run", "--out", "{tmp}/e"], "missing_run"),
    (["compare", "{tmp}"], "missing metrics.json"),
])
def test_bad_input_gives_one_clear_line(args, needle, tmp_path, inference_catalog, capsys):
    args = [a.format(tmp=tmp_path, catalog=f"catalog:{inference_catalog}") for a in args]
    code, text = run_cli(args, capsys)
    assert code == 2
    assert needle in text
    assert "Traceback" not in text
