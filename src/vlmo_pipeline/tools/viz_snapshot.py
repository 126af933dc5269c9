"""Render the Kedro-Viz graph of this project in headless Chromium: PNG screenshots of the graph alone.

Used by `make viz-snapshot` / the end of `make demo` and by the browser test. One call writes the whole graph to
``--out`` (data/08_reporting/kedro_viz.png) and one picture per pipeline group next to it
(kedro_viz_data.png, kedro_viz_pretraining.png, kedro_viz_finetuning.png).

How the page is made to show the graph alone, at a readable zoom:

* Chromium is driven through the DevTools protocol (``--remote-debugging-port``, one websocket). Before the
  page's own scripts run, the ``KedroViz`` localStorage entry that Kedro-Viz 12 restores its settings from is
  seeded with ``showFeatureHints: false`` (no onboarding tour, "1 of 6"), ``display.globalNavigation: false``
  (no left menu bar, hence no "Kedro-Viz <version> is here!" update banner, which an offline server always
  shows because its PyPI check fails) and the sidebar, minimap and zoom toolbar turned off.
* A group is the ``__default__`` pipeline filtered to its pipelines' tags (``?pid=__default__&tags=...``):
  every node of this project carries its pipeline's name as a tag, and Kedro-Viz shows the datasets around the
  tagged nodes.
* Kedro-Viz fits the graph to the window; the window is then resized to the graph's own size at
  :data:`TARGET_ZOOM` (within :data:`MIN_WINDOW`..:data:`MAX_WINDOW`) and Kedro-Viz refits it.

Offline: Chromium resolves no host name but 127.0.0.1 (the page links Google Fonts), and the Kedro-Viz server's
PyPI version check goes to a proxy address where nothing listens, so it fails at once instead of reaching out.
Kedro-Viz is started as `kedro viz run --no-browser` in its own process group, so stopping it also stops the
uvicorn child it spawns (killing only the parent leaves the server running).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vlmo_pipeline.files import atomic_write_bytes
from vlmo_pipeline.training.runs import FINETUNING_RUNS, PRETRAINING_RUNS

# Chromium flags for a closed network: without the background-networking ones it keeps trying to reach
# Google's services; the resolver rule makes every host name but the loopback fail at once (the Kedro-Viz page
# links fonts.googleapis.com); --no-sandbox because CI runs as root.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)

#: Kedro-Viz settings seeded into localStorage["KedroViz"] before the page loads (Kedro-Viz 12.x merges this
#: entry into its initial state): no onboarding tour, no navigation bar (which holds the update banner), no
#: sidebar, minimap or zoom toolbar over the graph.
KEDRO_VIZ_SETTINGS = {
    "showFeatureHints": False,
    "featureHintStep": 0,
    "display": {"globalNavigation": False, "sidebar": False, "miniMap": False, "zoomToolbar": False},
    "visible": {"sidebar": False, "miniMap": False, "metadataModal": False, "settingsModal": False},
}

#: Pipeline groups pictured one by one: group name -> the registered pipelines (= node tags) it shows.
GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("demo_data", "ingest", "vocab"),
    "pretraining": tuple(run.pipeline for run in PRETRAINING_RUNS),
    "finetuning": (*(run.pipeline for run in FINETUNING_RUNS), "evaluate"),
}

#: Zoom the window is sized for (Kedro-Viz's own fit then decides), and the window's bounds in CSS pixels.
TARGET_ZOOM = 0.8
MIN_WINDOW = (1000, 700)
MAX_WINDOW = (2400, 2000)

#: CSS selectors of the pop-ups that must not cover the graph (onboarding tour, update banner, modals).
OVERLAY_SELECTORS = (
    ".feature-hints",
    ".update-reminder",
    ".update-reminder-unexpanded",
    ".pipeline-settings-modal",
    ".kui-modal--visible",
)


@dataclass(frozen=True)
class View:
    """One picture: ``tags`` empty means the whole ``__default__`` pipeline."""

    name: str
    tags: tuple[str, ...] = ()

    def query(self) -> str:
        params = {"pid": "__default__"}
        if self.tags:
            params["tags"] = ",".join(self.tags)
        return "/?" + urllib.parse.urlencode(params, safe=",")


WHOLE = View("all")
DEFAULT_VIEWS = (WHOLE, *(View(name, tags) for name, tags in GROUPS.items()))


@dataclass
class Snapshot:
    """What one rendered view showed."""

    view: View
    screenshot: Path
    page_text: str  # document.body.innerText
    nodes: dict[str, bool]  # node/dataset name drawn on the graph -> drawn entirely inside the window
    expected: set[str]  # the names the view should draw
    zoom: float  # Kedro-Viz's zoom (1.0 = 100 %)
    window: tuple[int, int]
    overlays: list[str] = field(default_factory=list)  # OVERLAY_SELECTORS found visible on the page

    @property
    def not_in_window(self) -> list[str]:
        """Expected names that are not drawn, or not wholly inside the window."""
        return sorted(name for name in self.expected if not self.nodes.get(name))


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
    # A bound socket that never listens: connecting to it is refused at once. As the server's HTTP(S) proxy it
    # makes Kedro-Viz's PyPI version check (at start and on every /api/version) fail without leaving the host.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    proxy = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
    env = dict(
        os.environ,
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        HTTP_PROXY=proxy,
        HTTPS_PROXY=proxy,
        http_proxy=proxy,
        https_proxy=proxy,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
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
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"kedro viz exited with {process.returncode}:\n{log.read().decode()[-3000:]}")
            try:
                with no_proxy.open(f"{url}/api/main", timeout=2) as response:
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
        blackhole.close()


def _stop_group(process: subprocess.Popen) -> None:
    """Stop the process and every process of its group (Kedro-Viz's uvicorn child, Chromium's helpers)."""
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


class DevTools:
    """A minimal Chrome DevTools protocol client: one browser websocket, one page session (flat mode)."""

    def __init__(self, websocket):
        self._ws = websocket
        self._next_id = 0
        self.session: str | None = None

    def call(self, method: str, timeout: float = 60.0, session: bool = True, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") != self._next_id:
                continue  # an event or a late reply
            if "error" in reply:
                raise RuntimeError(f"DevTools {method}: {reply['error']}")
            return reply["result"]

    def evaluate(self, expression: str, timeout: float = 30.0):
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open_page(self, width: int, height: int) -> None:
        target = self.call("Target.createTarget", session=False, url="about:blank")
        attached = self.call("Target.attachToTarget", session=False, targetId=target["targetId"], flatten=True)
        self.session = attached["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.set_window(width, height)

    def set_window(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)


@contextmanager
def chromium_devtools(chromium: str, timeout: float = 30.0):
    """Start headless Chromium with a DevTools port in a fresh profile; yields a connected :class:`DevTools`."""
    with tempfile.TemporaryDirectory() as profile, tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=log,  # a file, not a pipe: nobody reads it while Chromium runs
            start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"  # "<port>\n<browser websocket path>"
            deadline = time.monotonic() + timeout
            while True:
                lines = port_file.read_text().split() if port_file.exists() else []
                if len(lines) == 2:
                    break
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"chromium exited with {process.returncode}: {log.read().decode()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"chromium opened no DevTools port within {timeout:.0f}s")
                time.sleep(0.1)
            from websockets.sync.client import connect  # websockets comes with kedro-viz (uvicorn[standard])

            # proxy=None: a DevTools socket on the loopback, whatever proxy the environment names
            with connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, open_timeout=30, proxy=None) as ws:
                yield DevTools(ws)
        finally:
            _stop_group(process)


# Page-side probe: the zoom of the graph, its drawn size, and every node's name and whether it lies wholly
# inside the window (text labels included).
_PROBE = """(() => {
  const wrapper = document.querySelector('#pipeline-graph #zoom-wrapper');
  const match = wrapper && /scale\\(([0-9.e+-]+)\\)/.exec(wrapper.getAttribute('transform') || '');
  const W = window.innerWidth, H = window.innerHeight;
  const nodes = {};
  let signature = '';
  for (const node of document.querySelectorAll('#pipeline-graph #nodes .pipeline-node[data-node-fullname]')) {
    const r = node.getBoundingClientRect();
    const style = getComputedStyle(node);
    const shown = r.width > 0 && r.height > 0 && style.visibility !== 'hidden' && style.display !== 'none'
      && Number(node.getAttribute('opacity') ?? 1) > 0;
    nodes[node.dataset.nodeFullname] = shown && r.left >= 0 && r.top >= 0 && r.right <= W && r.bottom <= H;
    signature += `${node.dataset.nodeFullname}:${r.left.toFixed(1)},${r.top.toFixed(1)},${r.width.toFixed(1)};`;
  }
  const box = wrapper ? wrapper.getBoundingClientRect() : {width: 0, height: 0};
  const overlays = OVERLAYS.filter(sel => [...document.querySelectorAll(sel)].some(
    el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; }));
  return {document: performance.timeOrigin, zoom: match ? Number(match[1]) : null,
          width: box.width, height: box.height, W, H, nodes, signature, overlays,
          text: document.body ? document.body.innerText : ''};
})()"""


def _probe(devtools: DevTools) -> dict:
    return devtools.evaluate(_PROBE.replace("OVERLAYS", json.dumps(list(OVERLAY_SELECTORS))))


def _wait_settled(
    devtools: DevTools,
    expected: set[str],
    timeout: float,
    old_document: float | None = None,
    window: tuple[int, int] | None = None,
    poll: float = 0.25,
    calm: int = 4,
) -> dict:
    """Poll until the graph is drawn (every ``expected`` name present) and nothing moved for ``calm`` polls.

    ``old_document``: the ``performance.timeOrigin`` of the page before a navigation, which must be gone;
    ``window``: the window size just set, which the page must report.
    """
    deadline = time.monotonic() + timeout
    last, same = None, 0
    state: dict = {}
    while time.monotonic() < deadline:
        try:
            state = _probe(devtools)
        except RuntimeError:  # the page is between documents ("execution context was destroyed")
            time.sleep(poll)
            continue
        fresh = (old_document is None or state["document"] != old_document) and (
            window is None or (state["W"], state["H"]) == tuple(window)
        )
        ready = fresh and state["nodes"] and state["zoom"] and expected <= set(state["nodes"])
        if ready and state["signature"] == last:
            same += 1
            if same >= calm:
                return state
        else:
            same = 0
        last = state["signature"] if ready else None
        time.sleep(poll)
    missing = sorted(expected - set(state.get("nodes", {})))
    raise TimeoutError(f"Kedro-Viz graph not settled within {timeout:.0f}s (missing nodes: {missing[:10]})")


def _window_for(state: dict) -> tuple[int, int]:
    """Window size at which the drawn graph (at ``state['zoom']``) would come out at :data:`TARGET_ZOOM`."""
    scale = TARGET_ZOOM / state["zoom"]
    margin = 80  # Kedro-Viz keeps some padding around the fitted graph
    width = round(state["width"] * scale + margin)
    height = round(state["height"] * scale + margin)
    return (
        min(max(width, MIN_WINDOW[0]), MAX_WINDOW[0]),
        min(max(height, MIN_WINDOW[1]), MAX_WINDOW[1]),
    )


def drawn_names(base_url: str, view: View) -> set[str]:
    """Names of the nodes and datasets Kedro-Viz draws for ``view``, from the server's own /api/main.

    Kedro-Viz hides parameters by default, and a dataset carries the tags of the nodes around it, so a tag
    filter draws the tagged nodes and their datasets.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base_url}/api/main", timeout=30) as response:
        graph = json.load(response)
    wanted = set(view.tags)
    return {
        node.get("full_name") or node["name"]
        for node in graph["nodes"]
        if node["type"] in ("task", "data")
        and "__default__" in (node.get("pipelines") or ())
        and (not wanted or wanted & set(node.get("tags") or ()))
    }


def render_view(
    devtools: DevTools,
    base_url: str,
    view: View,
    out_png: Path,
    expected: set[str] | None = None,
    timeout: float = 45.0,
) -> Snapshot:
    """Load ``view`` in the open page, size the window to the graph, screenshot it into ``out_png``.

    Waits until every name of ``expected`` (default: :func:`drawn_names`) is drawn and the graph stops moving.
    """
    expected = set(drawn_names(base_url, view) if expected is None else expected)
    devtools.set_window(*MIN_WINDOW)
    old_document = devtools.evaluate("performance.timeOrigin")
    devtools.call("Page.navigate", url=base_url + view.query())
    state = _wait_settled(devtools, expected, timeout, old_document)
    window = _window_for(state)
    if window != (state["W"], state["H"]):
        devtools.set_window(*window)  # Kedro-Viz refits the graph to the new chart size
        state = _wait_settled(devtools, expected, timeout, window=window)
    png = base64.b64decode(devtools.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"])
    out_png = Path(out_png)
    atomic_write_bytes(out_png, png, parents=True)
    return Snapshot(
        view=view,
        screenshot=out_png,
        page_text=state["text"],
        nodes=state["nodes"],
        expected=expected,
        zoom=state["zoom"],
        window=(state["W"], state["H"]),
        overlays=state["overlays"],
    )


def sibling_png(out_png: Path, view: View) -> Path:
    """Where ``view``'s picture goes: ``out_png`` for the whole graph, ``<stem>_<group>.png`` next to it."""
    return out_png if view == WHOLE else out_png.with_name(f"{out_png.stem}_{view.name}{out_png.suffix}")


def snapshot(
    project: Path,
    out_png: Path,
    views: tuple[View, ...] = DEFAULT_VIEWS,
    expected: dict[str, set[str]] | None = None,
) -> dict[str, Snapshot]:
    """Screenshot every view of ``project``'s Kedro-Viz page (names from :func:`sibling_png`); by view name.

    ``expected`` (view name -> node names) replaces :func:`drawn_names` as the names each view must draw.
    """
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found: install Debian's `chromium` package (make setup does)")
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    expected = expected or {}
    results: dict[str, Snapshot] = {}
    with kedro_viz_server(Path(project)) as url, chromium_devtools(chromium) as devtools:
        devtools.open_page(*MIN_WINDOW)
        seed = f"localStorage.setItem('KedroViz', {json.dumps(json.dumps(KEDRO_VIZ_SETTINGS))});"
        devtools.call(
            "Page.addScriptToEvaluateOnNewDocument",
            source=f"if (location.origin === {json.dumps(url)}) {{ {seed} }}",
        )
        for view in views:
            results[view.name] = render_view(devtools, url, view, sibling_png(out_png, view), expected.get(view.name))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=".", help="Kedro project folder")
    parser.add_argument(
        "--out",
        default="data/08_reporting/kedro_viz.png",
        help="PNG of the whole graph; the per-group PNGs go next to it as <stem>_<group>.png",
    )
    parser.add_argument("--no-groups", action="store_true", help="only the whole graph")
    args = parser.parse_args(argv)
    views = (WHOLE,) if args.no_groups else DEFAULT_VIEWS
    try:
        results = snapshot(Path(args.project), Path(args.out), views)
    except (FileNotFoundError, RuntimeError, TimeoutError, OSError) as error:  # no Chromium, no Kedro-Viz, ...
        print(f"error: {error}", file=sys.stderr)
        return 1
    status = 0
    for result in results.values():
        print(f"wrote {result.screenshot} ({result.window[0]}x{result.window[1]}, zoom {result.zoom:.0%})")
        if result.not_in_window or result.overlays:
            print(
                f"error: {result.view.name}: not in the window: {result.not_in_window}; pop-ups: {result.overlays}",
                file=sys.stderr,
            )
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
