"""Faults survived: a process killed at any moment, two processes building the same thing, a
full disk. Real subprocesses where the fault is a process's death."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from helpers import tiny_llm_folder, train_tiny, write_cycle_files
from safetensors.torch import load_file, save_file

from llara_kit import run_folder
from llara_kit.cli import cli
from llara_kit.errors import LlaraKitError
from llara_kit.storage import atomic_path, complete_dir, read_json, read_jsonl, staged_dir
from llara_kit.training.train import Trainer

CLI = [sys.executable, "-c", "from llara_kit.cli import main; main()"]


def train_args(root, out, checkpoint_every=3, samples=120):
    return ["train", "--dataset", "csv", "--data-dir", str(write_cycle_files(root / "cycle")),
            "--llm", str(tiny_llm_folder()), "--history", "5", "--candidates", "10",
            "--split", "0.6,0.2,0.2", "--template", "item", "--precision", "fp32",
            "--batch-size", "4", "--grad-accum", "1", "--max-train-samples", str(samples),
            "--encoder-option", "hidden_size=16", "--checkpoint-every", str(checkpoint_every),
            "--out", str(out)]


def test_train_killed_mid_run_resumes_to_the_same_adapter(tmp_path):
    args = lambda out: train_args(tmp_path, out, samples=400)  # noqa: E731 (100 steps)
    straight = CliRunner().invoke(cli, args(tmp_path / "straight"))
    assert straight.exit_code == 0, straight.output
    log = tmp_path / "killed" / "train_log.jsonl"
    proc = subprocess.Popen([*CLI, *args(tmp_path / "killed")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and log.read_bytes().count(b"\n") >= 10:  # of 100 steps
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = len(read_jsonl(log, torn_tail=True))
    ckpt = complete_dir(tmp_path / "killed" / "checkpoint", "state.json")
    resumed_from = json.loads((ckpt / "state.json").read_text())["step"]
    assert 0 <= done - resumed_from <= 3 + 1  # at most checkpoint_every (+ the step in flight)
    result = CliRunner().invoke(cli, [*args(tmp_path / "killed"), "--resume"])
    assert result.exit_code == 0, result.output
    a = load_file(tmp_path / "straight/adapter/adapter_model.safetensors")
    b = load_file(tmp_path / "killed/adapter/adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    steps = len(read_jsonl(tmp_path / "straight" / "train_log.jsonl"))
    assert [e["step"] for e in read_jsonl(log)] == list(range(steps))


def test_two_processes_build_the_same_data_and_encoder_at_once(tmp_path):
    folder = write_cycle_files(tmp_path / "cycle", n_items=300, n_users=300, length=40)
    args = ["pretrain", "--encoder", "gru4rec", "--dataset", "csv", "--data-dir", str(folder),
            "--epochs", "2", "--json"]
    procs = [subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    reports = [json.loads(out) for out, _ in outs]
    assert reports[0]["path"] == reports[1]["path"] and reports[0] == reports[1]
    path = reports[0]["path"]
    assert os.path.isfile(os.path.join(path, "pretrain.json"))
    assert os.path.isfile(os.path.join(path, "encoder.safetensors"))
    for kind in ("data", "encoders"):
        root = os.path.join(os.environ["LLARA_KIT_HOME"], kind)
        assert not [n for n in os.listdir(root) if n.endswith((".tmp", ".old"))], kind


def test_a_full_disk_or_read_only_home_is_one_sentence(tmp_path, monkeypatch):
    for code, text, fix in ((errno.ENOSPC, "No space left on device", "free some space"),
                            (errno.EROFS, "Read-only file system", "it is read-only"),
                            (errno.EACCES, "Permission denied", "check its permissions")):
        def refuse(*args, code=code, text=text, **kw):
            raise OSError(code, text, str(tmp_path / "home"))

        monkeypatch.setattr("llara_kit.storage.tempfile.mkdtemp", refuse)
        monkeypatch.setenv("LLARA_KIT_HOME", str(tmp_path / f"home-{code}"))
        result = CliRunner().invoke(cli, ["data", "prepare"])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert lines[-1].startswith(f"Error: {text} at {tmp_path / 'home'}; {fix}, or point "
                                    "--out / $LLARA_KIT_HOME at a writable folder")
        assert "Traceback" not in result.output


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB file system of its own (tmpfs), filled by ``fill(disk)``; root only."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk is an 8 MB tmpfs, which only root can mount: {mounted.stderr}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk):
    """Write a file until the disk is full."""
    with open(disk / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_failed_safetensors_write_is_the_os_error_it_wraps(small_disk):
    """safetensors raises its own error for a full disk."""
    path = small_disk / "x.safetensors"
    with pytest.raises(OSError) as caught, atomic_path(path) as tmp:
        save_file({"x": torch.zeros(4 * 2**20)}, str(tmp))  # 16 MB
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert list(small_disk.iterdir()) == []


def test_a_disk_that_fills_during_training_is_one_sentence_and_resume_continues(
        tmp_path, small_disk, monkeypatch):
    out = small_disk / "run"
    save = Trainer.save_checkpoint

    def fill_first(trainer, step):  # the disk fills after the first checkpoint
        if step > 3:
            fill(small_disk)
        save(trainer, step)

    monkeypatch.setattr(Trainer, "save_checkpoint", fill_first)
    result = CliRunner().invoke(cli, train_args(tmp_path, out))
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: No space left on device at {out}"), result.output
    assert last.endswith("; free some space, or point --out / $LLARA_KIT_HOME at a writable "
                         "folder (what was written before is intact: every write goes to a "
                         "temporary file first); then `train` with the same --out and --resume "
                         "continues from the last checkpoint."), last
    assert read_json(out / "checkpoint" / "state.json")["step"] == 3
    monkeypatch.undo()
    (small_disk / "filler").unlink()
    result = CliRunner().invoke(cli, [*train_args(tmp_path, out), "--resume"])
    assert result.exit_code == 0, result.output
    fill(small_disk)
    result = CliRunner().invoke(cli, ["evaluate", str(out), "--no-fuse"])
    assert result.exit_code == 1 and "Error: No space left on device at " in result.output
    assert "then `train`" not in result.output and not (out / "metrics.json").exists()
    (small_disk / "filler").unlink()
    result = CliRunner().invoke(cli, ["evaluate", str(out), "--no-fuse", "--json"])
    assert result.exit_code == 0, result.output  # the failed write lost nothing
    assert read_json(out / "metrics.json")["test"]["score"]["metrics"]["HR@1"]["value"] == \
        json.loads(result.stdout)["score"]["HR@1"]["value"]


@pytest.mark.parametrize(("name", "damage"), [
    ("objective.safetensors", lambda b: b[: len(b) // 2]),  # a copy cut short
    ("adapter/adapter_model.safetensors", lambda b: b[:7]),
    ("config.json", lambda b: b[:-20]),
    ("metrics.json", lambda b: b"\xff" + b),  # not UTF-8
])
def test_a_damaged_run_file_is_one_sentence(damaged_run, name, damage):
    path = damaged_run / name
    whole = path.read_bytes()
    path.write_bytes(damage(whole))
    try:
        result = CliRunner().invoke(cli, ["evaluate", str(damaged_run), "--no-fuse"])
    finally:
        path.write_bytes(whole)
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: File '{path}' is damaged ("), result.output
    assert last.endswith("); restore it from a copy, or remove it and run the command that "
                         "wrote it again."), last
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory):
    run = train_tiny(tmp_path_factory.mktemp("damaged"), "run")
    assert CliRunner().invoke(cli, ["evaluate", str(run), "--no-fuse"]).exit_code == 0
    return run


def test_an_evaluation_killed_midway_leaves_metrics_that_parse(damaged_run):
    before = read_json(damaged_run / "metrics.json")
    proc = subprocess.Popen([*CLI, "evaluate", str(damaged_run), "--draws", "2", "--no-fuse"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock, deadline = damaged_run / run_folder.LOCK, time.monotonic() + 300
    while not (lock.is_file() and lock.read_text().startswith(f"process {proc.pid} ")):
        assert proc.poll() is None and time.monotonic() < deadline, "it ended unkilled"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    after = read_json(damaged_run / "metrics.json")  # whole: what was there, or more
    assert after["test"]["score"] == before["test"]["score"]
    result = CliRunner().invoke(cli, ["evaluate", str(damaged_run), "--no-fuse"])
    assert result.exit_code == 0, result.output


def test_interrupted_evaluation_is_not_trusted(tmp_path):
    run = train_tiny(tmp_path, "run")
    assert CliRunner().invoke(cli, ["evaluate", str(run), "--no-fuse"]).exit_code == 0
    preds = run / "predictions-test-score.jsonl"
    rows = read_jsonl(preds)
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]))  # not what was recorded
    result = CliRunner().invoke(cli, ["compare", str(run)])
    assert result.exit_code == 1
    assert "does not match the metrics recorded with it (an evaluation was interrupted)" in \
        result.output


def test_staged_folders_survive_a_kill_between_renames(tmp_path):
    final = tmp_path / "ckpt"
    with staged_dir(final) as tmp:
        (tmp / "state.json").write_text("1")
    with staged_dir(final) as tmp:
        (tmp / "state.json").write_text("2")
    assert (final / "state.json").read_text() == "2" and not final.with_name("ckpt.old").exists()
    os.replace(final, final.with_name("ckpt.old"))  # as if killed between the two renames
    assert complete_dir(final, "state.json") == final.with_name("ckpt.old")
    with staged_dir(final, keep=lambda f: True) as tmp:  # nothing there: ours is stored
        (tmp / "state.json").write_text("3")
    with staged_dir(final, keep=lambda f: True) as tmp:  # another finished first: kept
        (tmp / "state.json").write_text("4")
    assert (final / "state.json").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_torn_log_line_is_dropped(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n{"st')
    assert read_jsonl(path, torn_tail=True) == [{"step": 0}, {"step": 1}]
    with pytest.raises(LlaraKitError, match="log.jsonl' is damaged \\(not JSON: "):
        read_jsonl(path)


def test_written_files_get_the_usual_modes(tmp_path):
    from llara_kit.storage import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with staged_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_two_trainings_into_one_folder_one_trains_the_other_names_it(tmp_path):
    args = train_args(tmp_path, tmp_path / "shared")
    first = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    lock, deadline = tmp_path / "shared" / run_folder.LOCK, time.monotonic() + 300
    while not (lock.is_file() and lock.read_text().startswith(f"process {first.pid} ")):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # holding the folder until the second has tried
    try:
        second = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    trained = first.communicate(timeout=600)[1]
    assert (first.returncode, second.returncode) == (0, 1), (trained[-2000:], second.stderr)
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: Run folder '{tmp_path / 'shared'}' is in use by process "
                           f"{first.pid} (training since "), second.stderr
    assert last.endswith("); wait for it to end, or choose another --out."), last
    assert "Traceback" not in second.stderr
    # its output went to a pipe: plain progress lines, the first step's and the last one's
    lines = trained.splitlines()
    assert any(x.startswith("training: 1/30 steps (3%), loss ") and "samples/s" in x
               and "ETA" in x for x in lines), lines
    assert any(x.startswith("training: 30/30 steps (100%)") for x in lines), lines
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "shared"), "--no-fuse"])
    assert result.exit_code == 0, result.output  # the kernel released the winner's lock
    assert "scoring test: 8/8 users (100%)" in result.output


def test_evaluating_a_folder_another_process_holds_is_one_sentence(tmp_path):
    run = train_tiny(tmp_path, "run")
    with run_folder.owned(run, "training", "wait for it to end, or choose another --out"):
        result = subprocess.run([*CLI, "evaluate", str(run), "--no-fuse"], capture_output=True,
                                text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"Error: Run folder '{run}' is in use by process {os.getpid()} (training since "), \
        result.stderr
    assert not (run / "metrics.json").exists()
