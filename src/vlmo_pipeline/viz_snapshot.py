"""Render the Kedro-Viz graph of this project in headless Chromium: a PNG screenshot and the rendered page text.

Used by `make viz-snapshot` (writes data/08_reporting/kedro_viz.png) and by the browser test. Kedro-Viz is
started as `kedro viz run --no-browser` in its own process group, so stopping it also stops the uvicorn child
it spawns (killing only the parent leaves the server running).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Chromium flags for a closed network: without the background-networking ones it keeps trying to reach
# Google's services; --no-sandbox because CI runs as root.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


@dataclass
class Snapshot:
    screenshot: Path
    page_text: str


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    """A free loopback port below 49152 (Kedro-Viz refuses ports in the ephemeral range the OS hands out)."""
    for port in random.Random().sample(range(20000, 49000), 50):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port found in 20000-49000")


@contextmanager
def kedro_viz_server(project: Path, timeout: float = 90.0):
    """Run `kedro viz run` for ``project`` on a free loopback port; yields the base URL."""
    port = _free_port()
    kedro = Path(sys.executable).with_name("kedro")
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [str(kedro), "viz", "run", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"kedro viz exited with {process.returncode}:\n{log.read().decode()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/main", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"kedro viz did not answer on {url} within {timeout:.0f}s")
            time.sleep(0.5)
        yield url
    finally:
        _stop_group(process)
        log.close()


def _stop_group(process: subprocess.Popen) -> None:
    """Stop the server and every process of its group (the uvicorn child included)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _chromium(chromium: str, url: str, extra: list[str], profile: Path, budget_ms: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(project: Path, out_png: Path, window: str = "1600,1000", budget_ms: int = 15000) -> Snapshot:
    """Screenshot the Kedro-Viz page of ``project`` into ``out_png`` and return the rendered DOM text."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found: install Debian's `chromium` package (make setup does)")
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with kedro_viz_server(Path(project)) as url, tempfile.TemporaryDirectory() as profile:
        tmp_png = out_png.with_name(f".{out_png.name}.tmp.png")
        shot = _chromium(chromium, url, [f"--screenshot={tmp_png}", f"--window-size={window}"], Path(profile), budget_ms)
        if not tmp_png.exists():
            raise RuntimeError(f"chromium wrote no screenshot (exit {shot.returncode}): {shot.stderr[-2000:]}")
        os.replace(tmp_png, out_png)
        dom = _chromium(chromium, url, ["--dump-dom", f"--window-size={window}"], Path(profile), budget_ms)
    return Snapshot(screenshot=out_png, page_text=dom.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=".", help="Kedro project folder")
    parser.add_argument("--out", default="data/08_reporting/kedro_viz.png")
    args = parser.parse_args(argv)
    try:
        result = snapshot(Path(args.project), Path(args.out))
    except (FileNotFoundError, RuntimeError, TimeoutError) as error:  # no Chromium, Kedro-Viz did not start, ...
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {result.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
