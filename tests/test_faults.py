"""Fault injection: kill -9 and SIGTERM of the app, train and predict, as an operator would.

Every subprocess runs in its own session with a timeout, and its whole process group is killed
in ``finally``, so a failing test leaves nothing running. Ports are loopback only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import torch

import galaxymorph
from test_predict import _read_paths

SRC = str(Path(__file__).resolve().parents[1] / "src")
FAST = dict(model="cnn3", image_size=32, batch_size=32, lr=3e-3, progress=False, cache=False,
            threads=1, early_stopping_patience=0)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from galaxymorph.cli.main import main; main()", *args]


def child_env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": SRC, "GALAXYMORPH_HOME": str(tmp_path / "home"),
                         "OMP_NUM_THREADS": "1"}


def _default_hangup() -> None:
    # The suite may run under nohup (SIGHUP ignored, inherited): the processes under test
    # start as from a terminal, where a hangup is a stop.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@contextmanager
def started(cmd: list[str], env: dict[str, str]):
    """A process in a session of its own; its whole group is SIGKILLed on the way out."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_hangup)
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None,
             poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, start time) of every live (non-zombie) process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    return table


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    return [pid for pid, (_, group, _) in proc_table().items() if group == pgid]


# -- app ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_stopped_app_frees_its_port(tiny_model, tmp_path, how):
    """SIGTERM/SIGHUP are passed on to the server; after a kill -9 of the launcher the server
    dies with it. Either way the port is free for the next start."""
    port = free_port()
    cmd = cli("app", "--model", str(tiny_model), "--port", str(port))
    with started(cmd, child_env(tmp_path)) as proc:
        wait_for(lambda: listening(port), 90, "the server to listen", proc)
        os.kill(proc.pid, getattr(signal, how))
        proc.wait(timeout=30)
        if how != "SIGKILL":
            assert proc.returncode == 0
        wait_for(lambda: not listening(port) and not group_members(proc.pid), 30,
                 "the server to exit and free its port")


def test_app_under_nohup_ignores_a_hangup(tiny_model, tmp_path):
    """Started with SIGHUP ignored (nohup), the app keeps serving through a hangup; SIGTERM
    still stops it and frees the port."""
    port = free_port()
    cmd = cli("app", "--model", str(tiny_model), "--port", str(port))
    proc = subprocess.Popen(cmd, env=child_env(tmp_path), start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_for(lambda: listening(port), 90, "the server to listen", proc)
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(2)
        assert proc.poll() is None and listening(port)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0
        wait_for(lambda: not listening(port) and not group_members(proc.pid), 30,
                 "the server to exit and free its port")
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)


# -- train -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from galaxymorph.data.synthetic import write_synthetic_catalog

    return f"catalog:{write_synthetic_catalog(tmp_path_factory.mktemp('faults'), 60, size=32, seed=3)}"


def test_sigterm_during_train_is_a_failure_that_resumes(catalog, tmp_path):
    """Pre-emption (SIGTERM to the whole process group, as a batch system sends it: the data
    loader's worker gets it too) must not read as success: status 143, a message, and --resume
    then finishes the run with every epoch exactly once."""
    out = tmp_path / "run"
    cmd = cli("train", "--data", catalog, "--model", "cnn3", "--image-size", "32", "--epochs", "40",
              "--patience", "0", "--threads", "1", "--workers", "1", "--out", str(out))
    last = out / "checkpoints" / "last.ckpt"
    with started(cmd, child_env(tmp_path)) as proc:
        wait_for(last.exists, 180, "the first checkpoint", proc)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert not (out / "summary.json").exists()
    done = torch.load(last, weights_only=True)["epoch"]
    result = galaxymorph.train(out=out, resume=True, epochs=done + 2)
    assert result.summary["epochs"] == done + 2


def test_resume_to_more_epochs_really_trains(catalog, tmp_path):
    """A finished run extended with --resume --epochs trains the new epochs at a real learning
    rate (the schedule is rebuilt for the new length), and the summary's times add up."""
    out = tmp_path / "run"
    galaxymorph.train(data=catalog, epochs=2, out=out, **FAST)
    before = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    first = json.loads((out / "summary.json").read_text())
    galaxymorph.train(out=out, resume=True, epochs=3)
    after = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["epoch"] == 2
    changed = [k for k, v in after["state_dict"].items()
               if v.is_floating_point() and not torch.equal(v, before["state_dict"][k])]
    assert changed, "the added epoch left every weight as it was (learning rate 0)"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3
    # Both cumulative: the second call's figures include the first's.
    assert summary["train_seconds"] > first["train_seconds"]
    assert summary["wall_seconds"] > first["wall_seconds"]
    assert summary["wall_seconds"] >= summary["train_seconds"]


def test_schedule_factor_is_rebuilt_for_the_new_length():
    from galaxymorph.training.module import schedule_factor

    assert schedule_factor(0, 10) == 1.0
    assert schedule_factor(10, 10) == pytest.approx(0.0)
    # Epoch 10 of a run extended to 20 sits mid-cosine, not at the old end.
    assert schedule_factor(10, 20) == pytest.approx(0.5)
    assert schedule_factor(0, 10, warmup_epochs=2) == pytest.approx(0.1)
    assert schedule_factor(2, 10, warmup_epochs=2) == pytest.approx(1.0)


def test_model_weights_are_readable_by_others(catalog, tmp_path):
    """On a shared cluster the model file must be as readable as every other result."""
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        galaxymorph.train(data=catalog, epochs=1, out=out, **FAST)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o644, modes
    assert set(modes.values()) == {0o644}, modes


# -- runs that cannot start, and runs that break ------------------------------------------------

def _bad_start(tmp_path: Path, catalog: str, case: str) -> dict:
    kinds = {
        "crop": {"crop": 2.0},
        "image_size": {"image_size": 4},
        "label_map": {"label_map": "no-such-map"},
        "split_file": {"split_file": str(tmp_path / "missing_split.json")},
        "weights": {"weights_path": str(tmp_path / "missing_weights.pth"), "model": "resnet18",
                    "pretrained": True},
        "accelerator": {"accelerator": "tpu"},
    }
    if case == "all_missing":
        csv = tmp_path / "missing.csv"
        csv.write_text("filename,label\na.png,0\nb.png,1\nc.png,0\nd.png,1\n")
        return {"data": f"catalog:{csv}"}
    if case == "header_only":
        csv = tmp_path / "empty.csv"
        csv.write_text("filename,label\n")
        return {"data": f"catalog:{csv}"}
    return {"data": catalog} | kinds[case]


@pytest.mark.parametrize("case", ["crop", "image_size", "label_map", "split_file", "weights",
                                  "accelerator", "all_missing", "header_only"])
def test_a_bad_option_writes_nothing(catalog, tmp_path, case):
    """The run folder appears only once every option is checked, so the retry just works."""
    from galaxymorph.errors import GalaxymorphError

    out = tmp_path / "runs" / "x"
    opts = FAST | {"epochs": 1} | _bad_start(tmp_path, catalog, case)
    with pytest.raises(GalaxymorphError) as info:
        galaxymorph.train(out=out, **opts)
    assert "Traceback" not in str(info.value)
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


def test_retry_after_a_bad_option_runs_the_new_options(catalog, tmp_path):
    from galaxymorph.errors import ConfigError
    from galaxymorph.training.config import TrainConfig

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="crop"):
        galaxymorph.train(data=catalog, out=out, epochs=1, **(FAST | {"crop": 2.0}))
    galaxymorph.train(data=catalog, out=out, epochs=1, **(FAST | {"crop": 0.5}))
    assert TrainConfig.load(out / "config.yaml").crop == 0.5


def test_corrupt_resume_point_and_out_file_are_one_line(catalog, tmp_path):
    from galaxymorph.errors import ConfigError

    out = tmp_path / "run"
    galaxymorph.train(data=catalog, out=out, epochs=1, **FAST)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(ConfigError, match=r"last\.ckpt: the resume point is unreadable"):
        galaxymorph.train(out=out, resume=True, epochs=2)
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="names a file, not a run folder"):
        galaxymorph.train(data=catalog, out=target, epochs=1, **FAST)


def test_empty_validation_fold_is_one_clear_error(catalog, tmp_path):
    from galaxymorph.errors import DataError

    with pytest.raises(DataError, match="the val fold has no readable image"):
        galaxymorph.train(data=catalog, out=tmp_path / "run", epochs=1,
                          **(FAST | {"fractions": (0.9, 0.0, 0.1)}))


def test_data_info_on_missing_files_names_them_and_fails(tmp_path, capsys):
    from galaxymorph.cli.main import main

    csv = tmp_path / "missing.csv"
    csv.write_text("filename,label\na.png,0\nb.png,1\n")
    with pytest.raises(SystemExit) as info:
        main(["data", "info", str(csv)])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "missing files: 2 of 2" in captured.out
    assert "no readable image: all 2 image files are missing" in captured.err


def test_evaluate_on_unreadable_data_is_one_clear_error(tiny_model, tmp_path):
    from galaxymorph.errors import DataError

    csv = tmp_path / "missing.csv"
    classes = json.loads((tiny_model / "model_card.json").read_text())["class_names"]
    csv.write_text("filename,label,label_name\n" + "".join(
        f"x{i}.png,{i},{name}\n" for i, name in enumerate(classes)))
    with pytest.raises(DataError, match="the dataset has no readable image"):
        galaxymorph.evaluate(model=tiny_model, data=f"catalog:{csv}", split="all",
                             out=tmp_path / "eval")


def test_aliased_duplicates_stay_in_one_fold(tmp_path):
    """``images/../images/X.png`` beside ``X.png``, and byte-identical copies, share a fold."""
    from galaxymorph.training.config import TrainConfig
    from galaxymorph.training.datamodule import GalaxyDataModule, open_training_data
    from makedata import write_catalog

    csv = write_catalog(tmp_path / "cat", classes=("a", "b"), per_class=20)
    lines = csv.read_text().splitlines()
    extra = [f"images/../images/{ln}" for ln in lines[1:]]
    images = tmp_path / "cat" / "images"
    for name in sorted(p.name for p in images.glob("*.png"))[:6]:
        (images / f"copy_{name}").write_bytes((images / name).read_bytes())
        label = next(ln for ln in lines[1:] if ln.startswith(name)).split(",", 1)[1]
        extra.append(f"copy_{name},{label}")
    csv.write_text("\n".join(lines + extra) + "\n")
    cfg = TrainConfig(data=f"catalog:{csv}", cache=False, progress=False)
    ds = open_training_data(cfg)
    folds = GalaxyDataModule(cfg, ds).setup()
    fold_of = {k: f for f in ("train", "val", "test") for k in folds.split.fold(f)}
    assert len(fold_of) == len(ds) == 86
    by_content: dict[bytes, set[str]] = {}
    for i, key in enumerate(ds.ids):
        by_content.setdefault(Path(ds.location(i)).read_bytes(), set()).add(fold_of[key])
    assert len(by_content) == 40  # 40 distinct images, each listed two or three times
    assert all(len(folds) == 1 for folds in by_content.values()), by_content.values()


# -- predict -----------------------------------------------------------------------------------

N_PREDICT = 300


@pytest.fixture(scope="module")
def many_images(tmp_path_factory, inference_catalog):
    """N_PREDICT image files (copies of the synthetic catalog's PNGs) in one folder."""
    src = sorted((inference_catalog.parent / "images").glob("*.png"))
    folder = tmp_path_factory.mktemp("many") / "predin"
    folder.mkdir()
    for i in range(N_PREDICT):
        (folder / f"img_{i:04d}.png").write_bytes(src[i % len(src)].read_bytes())
    return folder


def _progress(out: Path) -> int:
    from galaxymorph.inference.writers import done_paths

    try:
        return len(done_paths(out))
    except Exception:  # mid-write: ask again
        return 0


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_kill_9_of_predict_leaves_no_worker_and_resumes_exactly(tiny_model, many_images, tmp_path,
                                                                suffix):
    out = tmp_path / f"preds{suffix}"
    # One image per batch and a quick poll: with the ONNX engine a 300-image run can end
    # between two polls, and then there is nothing left to kill.
    cmd = cli("predict", "--model", str(tiny_model), "--out", str(out), "--batch-size", "1",
              "--workers", "1", str(many_images))
    with started(cmd, child_env(tmp_path)) as proc:
        wait_for(lambda: _progress(out) >= 6, 120, "the first rows", proc, poll=0.02)
        assert len(group_members(proc.pid)) >= 2, "expected predict and its decoding worker"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # The decoding worker dies with its parent instead of holding its memory for good.
        wait_for(lambda: not group_members(proc.pid), 20, "the decoding worker to exit")
    kept = _progress(out)
    assert 6 <= kept < N_PREDICT, "the run finished before the kill: the test proves nothing"
    summary = galaxymorph.predict(many_images, model=tiny_model, out=out, resume=True,
                                  progress=False)
    rows = _read_paths(out)
    assert len(rows) == N_PREDICT and len(set(rows)) == N_PREDICT
    assert summary.skipped == kept and summary.n_images == N_PREDICT - kept


def test_resume_from_another_folder_matches_paths(tiny_model, many_images, tmp_path, monkeypatch):
    """The same files spelled ``../predin`` from elsewhere are skipped, and counted truly."""
    files = sorted(many_images.glob("*.png"))[:5]
    out = tmp_path / "preds.csv"
    monkeypatch.chdir(many_images.parent)
    galaxymorph.predict([f"predin/{f.name}" for f in files[:3]], model=tiny_model, out=out,
                        progress=False)
    elsewhere = many_images.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    summary = galaxymorph.predict([f"../predin/{f.name}" for f in files], model=tiny_model,
                                  out=out, resume=True, progress=False)
    assert summary.skipped == 3 and summary.n_images == 2
    rows = _read_paths(out)
    assert len(rows) == 5 and rows == [str(f) for f in files]


def test_resume_keeps_a_row_cut_after_its_path(tiny_model, many_images, tmp_path):
    """A CSV line cut by a crash after its path column is not "done": the image is predicted again."""
    files = sorted(str(p) for p in many_images.glob("*.png"))[:4]
    out = tmp_path / "preds.csv"
    galaxymorph.predict(files, model=tiny_model, out=out, progress=False)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][: len(files[3]) + 5])  # path and a bit more
    summary = galaxymorph.predict(files, model=tiny_model, out=out, resume=True, progress=False)
    assert summary.skipped == 3 and summary.n_images == 1
    assert _read_paths(out) == files


def test_interrupted_parquet_parts_are_readable_and_block_a_plain_rerun(tiny_model, many_images,
                                                                        tmp_path):
    import pandas as pd

    from galaxymorph.errors import ConfigError
    from galaxymorph.inference.writers import ParquetWriter, columns_for, parquet_parts

    out = tmp_path / "preds.parquet"
    columns = columns_for(["a", "b"])
    writer = ParquetWriter(out, columns)
    writer.write([{"path": "x", "label": 0, "label_name": "a", "probability": 0.9,
                   "prob_a": 0.9, "prob_b": 0.1, "error": ""}])
    # No close(): as after a kill -9. The finished batch is readable where it lies.
    assert not out.exists()
    assert list(pd.read_parquet(parquet_parts(out))["path"]) == ["x"]
    with pytest.raises(ConfigError, match="output file exists"):
        galaxymorph.predict(many_images, model=tiny_model, out=out, progress=False)


def _descendants(pid: int) -> dict[int, int]:
    """Live processes below ``pid``, with their start times (Ray's may start process groups of
    their own, so the group alone could miss them)."""
    table = proc_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = table[child][2]
            todo.append(child)
    return found


def _alive(procs: dict[int, int]) -> set[int]:
    """Those of ``procs`` (pid -> start time) still running: a reused pid is another process."""
    table = proc_table()
    return {pid for pid, start in procs.items() if pid in table and table[pid][2] == start}


def _ray_workers(pids: Iterable[int]) -> list[int]:
    """Ray's task and actor processes among ``pids`` (not its agents): Ray is really running."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ray::") and b"Agent" not in cmd:
            out.append(pid)
    return out


def test_kill_9_of_ray_predict_leaves_no_ray_process(tiny_model, many_images, tmp_path):
    """Ray fate-shares only its GCS and raylet with the driver: without the watchdog
    (galaxymorph.reaper) its agents ran on after a kill -9."""
    out = tmp_path / "preds.csv"
    # --tta: 8x the work, so the run is still going when the workers are up.
    cmd = cli("predict", "--engine", "ray", "--tta", "--model", str(tiny_model), "--out", str(out),
              "--batch-size", "2", "--workers", "1", str(many_images))
    seen: dict[int, int] = {}
    try:
        with started(cmd, child_env(tmp_path) | {"RAY_ADDRESS": ""}) as proc:
            def workers_up() -> bool:
                seen.update(_descendants(proc.pid))
                return bool(_ray_workers(seen))

            wait_for(workers_up, 240, "Ray's workers", proc)
            seen.update(_descendants(proc.pid))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            wait_for(lambda: not _alive(seen), 60, "Ray's processes to exit")
    finally:
        for pid in _alive(seen):  # a failing test leaves nothing running either
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert _progress(out) < N_PREDICT, "the run finished before the kill: the test proves nothing"
