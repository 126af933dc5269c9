"""`dvc plots show` as an HTML page that renders offline.

DVC's default page loads vega, vega-lite and vega-embed from a public CDN, so it stays blank without a network.

* ``fetch`` (run by `make setup`): downloads the three libraries once with ``npm pack`` (vega@5, vega-lite@5,
  vega-embed@6) and keeps their ``build/*.min.js`` and licence files in ``<venv>/vega/``. They are third-party
  code: they live in the git-ignored virtual environment and are never committed. Nothing happens when they are
  already there; without npm it only warns.
* ``configure`` (run by `make setup` and `make plots`): makes the plain ``dvc plots show`` render offline too. It
  writes ``<venv>/vega/dvc_plots_inline.html`` (our template with the three libraries inlined into the page) and
  points DVC's ``plots.html_template`` at it in ``.dvc/config.local`` (git-ignored: the path is this machine's).
* ``show`` (run by `make plots`): ``dvc plots show --html-template scripts/dvc_plots_template.html -o <out>``,
  then copies the three libraries next to ``index.html``; the template loads them from the page's own folder, so
  the output folder is self-contained and renders from ``file://``. Without the libraries it warns and falls
  back to DVC's default template (which needs the CDN).

The output folder is written beside its final place and renamed into it, so a failed run leaves the previous
page intact.

    python -m vlmo_pipeline.tools.dvc_plots fetch [--vega-dir DIR]
    python -m vlmo_pipeline.tools.dvc_plots configure [--vega-dir DIR]
    python -m vlmo_pipeline.tools.dvc_plots show [--out data/08_reporting/dvc_plots] [--vega-dir DIR] [TARGET ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from vlmo_pipeline.files import atomic_write_bytes, remove_stale_siblings, staging_dir, swap_directory

__all__ = [
    "VEGA_PACKAGES",
    "DEFAULT_OUT",
    "DEFAULT_TEMPLATE",
    "default_vega_dir",
    "fetch_vega",
    "missing_vega_files",
    "show_plots",
    "inline_template",
    "configure_plain_dvc",
    "main",
]

#: npm package → version range; each package's ``build/<package>.min.js`` is what the page loads.
VEGA_PACKAGES: dict[str, str] = {"vega": "5", "vega-lite": "5", "vega-embed": "6"}
MANIFEST = "versions.json"
DEFAULT_OUT = Path("data/08_reporting/dvc_plots")
DEFAULT_TEMPLATE = Path("scripts/dvc_plots_template.html")
#: the template with the libraries inlined (written into the vega folder; plain `dvc plots show` uses it)
INLINE_TEMPLATE = "dvc_plots_inline.html"
#: a script tag that loads code from the network (the page must not have one when it is meant to be offline)
REMOTE_SCRIPT = re.compile(r"<script[^>]*\ssrc\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE)


class PlotsError(RuntimeError):
    """A plots step failed; the message says which and why."""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def default_vega_dir() -> Path:
    """``$VLMO_VEGA_DIR``, else ``vega/`` inside the running virtual environment, else ``.venv/vega``."""
    configured = os.environ.get("VLMO_VEGA_DIR")
    if configured:
        return Path(configured)
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "vega"
    return Path(".venv") / "vega"


def _script_name(package: str) -> str:
    return f"{package}.min.js"


def missing_vega_files(vega_dir: Path) -> list[str]:
    """Names of the libraries (and the manifest written after them) missing from ``vega_dir``."""
    wanted = [_script_name(package) for package in VEGA_PACKAGES] + [MANIFEST]
    return [name for name in wanted if not (Path(vega_dir) / name).is_file()]


def _member(tar: tarfile.TarFile, name: str) -> bytes | None:
    """Bytes of one regular file of an npm tarball (read, never extracted to disk by path)."""
    try:
        member = tar.getmember(name)
    except KeyError:
        return None
    stream = tar.extractfile(member) if member.isfile() else None
    return stream.read() if stream is not None else None


def fetch_vega(vega_dir: Path, npm: str | None = None, timeout: float = 300.0) -> dict[str, str]:
    """Put vega, vega-lite and vega-embed into ``vega_dir`` with ``npm pack`` unless they are there already.

    Returns ``{package: version}``. Raises ``FileNotFoundError`` when npm is missing and ``PlotsError`` when
    ``npm pack`` fails or a tarball lacks its ``build/*.min.js``.
    """
    vega_dir = Path(vega_dir)
    if not missing_vega_files(vega_dir):
        return json.loads((vega_dir / MANIFEST).read_text(encoding="utf-8"))
    npm = npm or shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm not found (install Node.js's npm, e.g. Debian's `npm` package)")
    vega_dir.mkdir(parents=True, exist_ok=True)
    specs = [f"{package}@{version}" for package, version in VEGA_PACKAGES.items()]
    with tempfile.TemporaryDirectory(prefix="vega-pack-") as scratch:
        command = [npm, "pack", *specs, "--json", "--ignore-scripts", "--pack-destination", scratch]
        env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false")
        try:
            result = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise PlotsError(f"`{' '.join(command[:5])}` did not finish within {timeout:.0f}s") from error
        if result.returncode != 0:
            raise PlotsError(
                f"`npm pack {' '.join(specs)}` failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
            )
        try:
            packed = {entry["name"]: entry for entry in json.loads(result.stdout)}
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise PlotsError(f"`npm pack --json` printed something unexpected: {result.stdout[:500]!r}") from error
        versions = {}
        for package in VEGA_PACKAGES:
            if package not in packed:
                raise PlotsError(f"`npm pack` did not produce {package} (got {sorted(packed)})")
            tarball = Path(scratch) / packed[package]["filename"]
            with tarfile.open(tarball, "r:gz") as tar:
                script = _member(tar, f"package/build/{_script_name(package)}")
                if not script:
                    raise PlotsError(f"{tarball.name} has no package/build/{_script_name(package)}")
                licence = _member(tar, "package/LICENSE")
            atomic_write_bytes(vega_dir / _script_name(package), script)
            if licence:
                atomic_write_bytes(vega_dir / f"{package}.LICENSE", licence)
            versions[package] = str(packed[package]["version"])
    # the manifest comes last: its presence means every library above is complete
    atomic_write_bytes(vega_dir / MANIFEST, (json.dumps(versions, indent=2) + "\n").encode())
    return versions


def _check_template(template: Path) -> None:
    if not template.is_file():
        raise PlotsError(f"HTML template {template} not found")
    text = template.read_text(encoding="utf-8")
    if "{plot_divs}" not in text:
        raise PlotsError(f"{template}: no {{plot_divs}} placeholder, DVC would have nowhere to put the plots")
    if "{scripts}" in text:
        raise PlotsError(f"{template}: remove the {{scripts}} placeholder, DVC fills it with CDN script tags")
    if REMOTE_SCRIPT.search(text):
        raise PlotsError(f"{template}: loads a script from the network; the page must work offline")


def inline_template(template: Path, vega_dir: Path) -> str:
    """``template`` with each ``<script src="<library>.min.js"></script>`` replaced by the library's code.

    A page built from it needs no files beside it, so DVC's own output folder (``dvc_plots/``) renders offline.
    """
    _check_template(template)
    text = template.read_text(encoding="utf-8")
    for package in VEGA_PACKAGES:
        tag = f'<script src="{_script_name(package)}"></script>'
        if tag not in text:
            raise PlotsError(f"{template}: no {tag} to inline")
        code = (Path(vega_dir) / _script_name(package)).read_text(encoding="utf-8")
        # the page is filled by plain string replacement: library code must not end the script element early or
        # contain DVC's placeholders
        for forbidden in ("</script", "{plot_divs}", "{refresh_tag}", "{scripts}"):
            if forbidden in code:
                raise PlotsError(f"{vega_dir / _script_name(package)} contains {forbidden!r}; it cannot be inlined")
        text = text.replace(tag, f"<script>/* {package}: see {package}.LICENSE in {vega_dir} */\n{code}\n</script>")
    return text


def configure_plain_dvc(
    project: Path = Path("."), vega_dir: Path | None = None, template: Path = DEFAULT_TEMPLATE
) -> Path:
    """Write the inlined template into ``vega_dir`` and set ``plots.html_template`` in ``.dvc/config.local``.

    Returns the template's path. Raises ``PlotsError`` when the libraries are missing or DVC refuses the setting.
    """
    project = Path(project).resolve()
    vega_dir = (project / (vega_dir or default_vega_dir())).resolve()
    missing = missing_vega_files(vega_dir)
    if missing:
        raise PlotsError(f"vega libraries missing from {vega_dir} ({', '.join(missing)}): run `make setup`")
    page = vega_dir / INLINE_TEMPLATE
    atomic_write_bytes(page, inline_template((project / template).resolve(), vega_dir).encode("utf-8"))
    command = [_dvc(), "config", "--local", "plots.html_template", str(page)]
    result = subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=120, env=dict(os.environ, DVC_NO_ANALYTICS="1")
    )
    if result.returncode != 0:
        raise PlotsError(f"`{' '.join(command[1:])}` failed (exit {result.returncode}): {result.stderr.strip()}")
    return page


def _dvc() -> str:
    beside = Path(sys.executable).with_name("dvc")
    if beside.is_file():
        return str(beside)
    found = shutil.which("dvc")
    if found is None:
        raise PlotsError("dvc not found: run `make setup` (or activate .venv)")
    return found


def show_plots(
    out: Path = DEFAULT_OUT,
    vega_dir: Path | None = None,
    template: Path = DEFAULT_TEMPLATE,
    targets: tuple[str, ...] | list[str] = (),
    project: Path = Path("."),
) -> tuple[Path, bool]:
    """Render the project's DVC plots into ``out/index.html``; returns (page, renders offline).

    With the libraries in ``vega_dir``: our template plus the libraries copied beside the page (offline). Without
    them: a warning, then DVC's default template (loads vega from a CDN).
    """
    project = Path(project).resolve()
    out = (project / out).resolve()
    template = (project / template).resolve()
    vega_dir = (project / (vega_dir or default_vega_dir())).resolve()
    missing = missing_vega_files(vega_dir)
    offline = not missing
    if offline:
        _check_template(template)
    else:
        _warn(
            f"vega libraries missing from {vega_dir} ({', '.join(missing)}): run `make setup` with npm "
            f"installed to fetch them. Falling back to DVC's default template, which loads vega from a CDN: "
            f"the page stays blank without a network."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(out)  # staging / retired folders of killed runs
    staging = staging_dir(out)
    shutil.rmtree(staging, ignore_errors=True)
    command = [_dvc(), "plots", "show", "-o", str(staging), *targets]
    if offline:
        command += ["--html-template", str(template)]
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    try:
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        for line in (result.stdout + result.stderr).splitlines():
            if line.strip() and not line.startswith("file://"):  # DVC names the staging folder; we print ours
                print(line, file=sys.stderr)
        if result.returncode != 0:
            raise PlotsError(f"`dvc plots show` failed (exit {result.returncode})")
        page = staging / "index.html"
        if not page.is_file():
            raise PlotsError(f"`dvc plots show` wrote no {page.name}")
        if offline:
            for package in VEGA_PACKAGES:
                for name in (_script_name(package), f"{package}.LICENSE"):
                    if (vega_dir / name).is_file():
                        shutil.copyfile(vega_dir / name, staging / name)
            if REMOTE_SCRIPT.search(page.read_text(encoding="utf-8")):
                raise PlotsError(f"{page} still loads a script from the network; check {template}")
        swap_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html", offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="npm pack vega, vega-lite, vega-embed into the vega folder")
    configure = commands.add_parser("configure", help="make plain `dvc plots show` render offline (.dvc/config.local)")
    show = commands.add_parser("show", help="dvc plots show with the offline template")
    for sub in (fetch, configure, show):
        sub.add_argument("--vega-dir", type=Path, default=None, help="default: $VLMO_VEGA_DIR or <venv>/vega")
    show.add_argument("--out", type=Path, default=DEFAULT_OUT)
    show.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    show.add_argument("targets", nargs="*", help="plot files / ids to show (default: every plot of dvc.yaml)")
    args = parser.parse_args(argv)
    vega_dir = args.vega_dir or default_vega_dir()
    try:
        if args.command == "fetch":
            already = not missing_vega_files(vega_dir)
            try:
                versions = fetch_vega(vega_dir)
            except FileNotFoundError as error:  # no npm: a warning, not a failure (make plots falls back)
                _warn(f"{error}; `make plots` will fall back to DVC's default template (needs a network to render)")
                return 0
            state = "present" if already else "fetched"
            print(
                f"vega libraries {state} in {vega_dir}: "
                + ", ".join(f"{name} {version}" for name, version in versions.items())
            )
            return 0
        if args.command == "configure":
            page = configure_plain_dvc(vega_dir=vega_dir)
            print(f"`dvc plots show` now renders offline: plots.html_template = {page} (in .dvc/config.local)")
            return 0
        page, offline = show_plots(args.out, vega_dir, args.template, args.targets)
    except PlotsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    how = "renders offline" if offline else "loads vega from a CDN"
    print(f"wrote {page} ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
