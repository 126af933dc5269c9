"""No debris, no orphans, locks: real processes killed with real signals (issue 12, item 7).

* a SIGKILLed ``DirectoryDataset.save`` leaves its ``.<name>.tmp-<pid>`` staging folder; the next save removes it;
* a live process's staging / retired folders and temporary files are never removed;
* the per-output lock (``.<name>.lock``) refuses a second concurrent writer with a clear message;
* temporary files of a killed ``files.py`` writer (``.<name>.<pid>.<hex>.tmp``) are removed by the next write;
* a killed ingestion's Dask worker processes exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from kedro.io import DatasetError

from vlmo_pipeline import files
from vlmo_pipeline.datasets.directory import DirectoryDataset


def _start(code: str, *args: str) -> tuple[subprocess.Popen, str]:
    """Run ``code`` in a fresh interpreter; wait for its first stdout line (which it prints when ready)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        proc.wait()
        raise AssertionError(f"child exited early (rc {proc.poll()})")
    return proc, line


def _kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    os.kill(proc.pid, sig)
    proc.wait(timeout=30)
    proc.stdout.close()


SAVE_AND_HANG = """
    import sys, time
    from pathlib import Path
    from vlmo_pipeline.datasets.directory import DirectoryDataset

    def writer(staging: Path) -> None:
        (staging / "weights.bin").write_bytes(b"x" * 4096)
        print(staging, flush=True)
        time.sleep(600)

    DirectoryDataset(path=sys.argv[1]).save(writer)
"""


def test_killed_save_leaves_staging_that_the_next_save_removes(tmp_path):
    target = tmp_path / "model"
    proc, staging = _start(SAVE_AND_HANG, str(target))
    staging = Path(staging)
    assert staging.name == f".model.tmp-{proc.pid}" and (staging / "weights.bin").exists()
    _kill(proc)
    assert staging.exists() and not target.exists()  # the debris a SIGKILL leaves

    DirectoryDataset(path=str(target)).save(lambda d: (d / "weights.bin").write_bytes(b"new"))

    assert (target / "weights.bin").read_bytes() == b"new"
    assert not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]  # lock file: a sibling


def test_live_process_debris_is_kept_and_dead_process_debris_removed(tmp_path):
    target = tmp_path / "coco"
    target.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        names = [f".coco.tmp-{live.pid}", f".coco.old-{live.pid}", f".coco.tmp-{dead.pid}", f".coco.old-{dead.pid}"]
        for name in names:
            (tmp_path / name).mkdir()
            (tmp_path / name / "part").write_bytes(b"x")
        (tmp_path / f".cocoa.tmp-{dead.pid}").mkdir()  # another target's: not ours to clean
        removed = files.remove_stale_siblings(target)
        assert sorted(p.name for p in removed) == sorted(names[2:])
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(["coco", f".cocoa.tmp-{dead.pid}", *names[:2]])
    finally:
        live.kill()
        live.wait()
    files.remove_stale_siblings(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["coco", f".cocoa.tmp-{dead.pid}"])


HOLD_LOCK = """
    import sys, time
    from vlmo_pipeline.files import lock_target

    with lock_target(sys.argv[1]) as lock:
        print(lock, flush=True)
        time.sleep(600)
"""


def test_lock_refuses_a_second_writer_until_the_holder_dies(tmp_path):
    target = tmp_path / "stage1"
    proc, lock = _start(HOLD_LOCK, str(target))
    try:
        assert Path(lock) == tmp_path / ".stage1.lock"
        assert Path(lock).read_text().strip() == str(proc.pid)
        expected = f"{target} is being written by another process (pid {proc.pid}, lock file {lock})"
        with pytest.raises(files.TargetLockedError) as info:
            with files.lock_target(target):
                pass
        assert str(info.value) == expected
        with pytest.raises(DatasetError, match="is being written by another process"):
            DirectoryDataset(path=str(target)).save(lambda d: (d / "f").write_text("x"))
        assert not target.exists()
        assert not list(tmp_path.glob(".stage1.tmp-*"))  # refused before any staging folder was made
    finally:
        _kill(proc)
    # the kernel released the SIGKILLed holder's lock: the next writer goes through at once
    DirectoryDataset(path=str(target)).save(lambda d: (d / "f").write_text("x"))
    assert (target / "f").read_text() == "x"
    with files.lock_target(target) as path:
        assert path.read_text().strip() == str(os.getpid())


WRITE_AND_HANG = """
    import sys, time
    from vlmo_pipeline.files import atomic_write_via

    def writer(temp):
        temp.write_bytes(b"half a model")
        print(temp, flush=True)
        time.sleep(600)

    atomic_write_via(sys.argv[1], writer)
"""


def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.safetensors"
    proc, temp = _start(WRITE_AND_HANG, str(target))
    temp = Path(temp)
    assert temp.name.startswith(f".model.safetensors.{proc.pid}.") and temp.name.endswith(".tmp")
    _kill(proc, signal.SIGTERM)
    assert temp.exists()

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live_temp = tmp_path / f".model.safetensors.{live.pid}.0badc0de.tmp"
        live_temp.write_bytes(b"being written")
        old_legacy = tmp_path / ".model.safetensors.deadbeef.tmp"  # pid-less name of older code
        old_legacy.write_bytes(b"old")
        two_hours_ago = time.time() - 2 * 3600
        os.utime(old_legacy, (two_hours_ago, two_hours_ago))
        fresh_legacy = tmp_path / ".model.safetensors.cafef00d.tmp"
        fresh_legacy.write_bytes(b"fresh")
        other = tmp_path / f".other.bin.{proc.pid}.12345678.tmp"  # another target's
        other.write_bytes(b"x")

        files.atomic_write_bytes(target, b"weights")

        assert target.read_bytes() == b"weights"
        assert not temp.exists() and not old_legacy.exists()
        assert live_temp.exists() and fresh_legacy.exists() and other.exists()
    finally:
        live.kill()
        live.wait()


ORPHAN_SCRIPT = """
    import time
    from vlmo_pipeline.data.ingest import IngestConfig, dask_client

    def spin(seconds):
        end = time.time() + seconds
        while time.time() < end:
            sum(range(10_000))

    if __name__ == "__main__":
        with dask_client(IngestConfig(workers=2)) as client:
            futures = [client.submit(spin, 300, pure=False) for _ in range(2)]
            while sum(len(v) for v in client.processing().values()) < 2:
                time.sleep(0.1)
            print("busy", flush=True)
            time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_ingestion_leaves_no_worker_processes(tmp_path, sig):
    script = tmp_path / "ingest_and_hang.py"  # a file, not -c: spawned workers re-import the main module
    script.write_text(textwrap.dedent(ORPHAN_SCRIPT))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "busy"
        children = psutil.Process(proc.pid).children(recursive=True)
        workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) >= 2, [c.cmdline() for c in children]
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    _kill(proc, sig)
    killed = time.monotonic()
    gone, alive = psutil.wait_procs(children, timeout=20)
    print(f"{len(gone)} child processes gone {time.monotonic() - killed:.2f} s after {sig.name}")
    for child in alive:  # do not leave them behind even when the test fails
        child.kill()
    assert not alive, f"still running {time.monotonic() - killed:.1f} s after {sig.name}: {[c.pid for c in alive]}"
