"""``galaxymorph data ...`` through the real entry point: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from galaxymorph.cli.main import main
from makedata import write_catalog


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``galaxymorph ARGS`` in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def catalog(tmp_path) -> Path:
    return write_catalog(tmp_path / "cat", ("Elliptical", "Spiral", "Merger"), per_class=3, size=24)


def test_info_json(catalog, capsys):
    code, out, err = run_cli(["data", "info", f"catalog:{catalog}", "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["n"] == 9
    assert [{k: c[k] for k in ("label", "name", "count")} for c in info["classes"]] == [
        {"label": 0, "name": "Elliptical", "count": 3}, {"label": 1, "name": "Spiral", "count": 3},
        {"label": 2, "name": "Merger", "count": 3}]


def test_info_table(catalog, capsys):
    code, out, _ = run_cli(["data", "info", catalog], capsys)
    assert code == 0
    assert "Elliptical" in out and "33.3%" in out and "█" in out
    assert "images: 9" in out and "24x24x3" in out and "imbalance ratio" in out


def test_info_with_label_map_file(catalog, tmp_path, capsys):
    lm = tmp_path / "two.yaml"
    lm.write_text("classes: [smooth, other]\nmap: {0: smooth, 1: other, 2: other}\n")
    code, out, _ = run_cli(["data", "info", catalog, "--label-map", lm, "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert [c["count"] for c in info["classes"]] == [3, 6] and info["label_map"] == "two"


def test_show_writes_grid_and_counts_pngs(catalog, tmp_path, capsys):
    grid, counts = tmp_path / "out" / "grid.png", tmp_path / "counts.png"
    code, out, err = run_cli(["data", "show", catalog, "--out", grid, "--per-class", "2",
                              "--crop", "0.8", "--image-size", "32"], capsys)
    assert code == 0, err
    assert f"wrote {grid}" in out
    code, _, err = run_cli(["data", "show", catalog, "--out", counts, "--plot", "counts", "--log"],
                           capsys)
    assert code == 0, err
    for p in (grid, counts):
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 200


def test_list_reports_cache_state(tmp_home, capsys):
    (tmp_home / "data").mkdir()
    (tmp_home / "data" / "Galaxy10.h5").write_bytes(b"x")
    (tmp_home / "data" / "Galaxy10_DECals.h5.part").write_bytes(b"y" * 10)
    code, out, _ = run_cli(["data", "list", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["galaxy10-sdss"]["present"] is True
    assert rows["galaxy10-decals"]["present"] is False
    assert rows["galaxy10-decals"]["partial_bytes"] == 10
    code, out, _ = run_cli(["data", "list"], capsys)
    assert code == 0 and "galaxy10-decals" in out and "partial" in out


def test_download_passes_its_arguments(monkeypatch, tmp_path, capsys):
    import galaxymorph.data.download as dl

    calls = []

    def fake(name, dest=None, *, sha256=None, progress=True, **kw):
        calls.append((name, dest, sha256, progress))
        return tmp_path / "got.h5"

    monkeypatch.setattr(dl, "download", fake)
    code, out, _ = run_cli(["data", "download", "galaxy10-sdss", "--dest", tmp_path,
                            "--no-progress"], capsys)
    assert code == 0
    assert calls == [("galaxy10-sdss", tmp_path, None, False)]
    assert str(tmp_path / "got.h5") in out


@pytest.mark.parametrize("case", ["missing file", "unknown spec", "csv without columns",
                                  "bad label map", "bad crop", "truncated h5", "unknown dataset",
                                  "markup-like path"])
def test_bad_inputs_exit_2_with_one_line_naming_the_problem(case, catalog, tmp_path, capsys,
                                                            tmp_home):
    nocols = tmp_path / "nocols.csv"
    nocols.write_text("a,b\n1,2\n")
    h5 = tmp_path / "cut.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    args, expect = {
        "missing file": (["data", "info", tmp_path / "nothere.csv"], f"{tmp_path / 'nothere.csv'}: catalog CSV not found"),
        "unknown spec": (["data", "info", "nosuch:x:"], "nosuch:x:: unknown dataset spec"),
        "csv without columns": (["data", "info", nocols], f"{nocols}: catalog lacks column"),
        "bad label map": (["data", "info", catalog, "--label-map", "nomap"], "unknown label map 'nomap'"),
        "bad crop": (["data", "show", catalog, "--out", tmp_path / "x.png", "--crop", "3"], "crop must be"),
        "truncated h5": (["data", "info", f"galaxy10-decals:{h5}"], f"{h5}: not a readable HDF5"),
        "unknown dataset": (["data", "download", "galaxy99"], "galaxy99: unknown dataset"),
        "markup-like path": (["data", "info", tmp_path / "[bold]" / "x.csv"], "[bold]/x.csv: catalog CSV"),
    }[case]
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert expect in err and err.startswith("error: ")
    assert len(err.strip().splitlines()) <= 2  # the message, and at most a hint
    assert "Traceback" not in out + err
    assert not (tmp_path / "x.png").exists()


def test_usage_errors_and_help(capsys, catalog, tmp_path):
    code, _, err = run_cli(["data", "show", catalog, "--out", tmp_path / "x.png", "--plot", "pie"],
                           capsys)
    assert code == 2 and "pie" in err and "Traceback" not in err
    code, out, _ = run_cli(["data", "--help"], capsys)
    assert code == 0 and "download" in out and "info" in out
    code, out, err = run_cli(["data"], capsys)  # no sub-command: help, not an error
    assert code == 0 and "info" in out + err
    code, out, _ = run_cli([], capsys)
    assert code == 0 and "data" in out


def test_real_executable_prints_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,label\na.png,seven\n")
    proc = subprocess.run([sys.executable, "-m", "galaxymorph.cli.main", "data", "info", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {bad}: column 'label' must hold integers (class "
                                   "indices); line 2 has 'seven'")
    assert proc.stdout == ""
