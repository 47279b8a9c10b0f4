"""The Python packages the volume's node packs need, in one cached layer on the volume.

Contract: `RequirementsLayer(envs_dir).prepare(wanted)` takes pack name -> its
requirements.txt and returns a `LayerOutcome`: `site`, the folder ComfyUI imports them from
(None when nothing is needed), and `refused`, pack name -> why its requirements cannot be
met beside the image. It never installs into the image's environment and never replaces
one of its packages: every installed distribution is held at its version (a pip
constraint), a requirement that names an image package at another version is refused
naming the package and the pin, and the layer holds only packages the image lacks, so
ComfyUI can import it first (PYTHONPATH) without shadowing anything.

The layer lives in `envs_dir/<key>/site-packages`, keyed by every pack's requirements
text, the Python version, the machine, torch's version and the image's other packages:
a worker of the same image with the same packs finds it built and runs no pip at all; an
image with other pins resolves afresh (a layer resolved against other pins could break
it). Building resolves with `pip install --dry-run --report` (all packs at once; on a
conflict, pack by pack, so the refusal names the pack), then installs exactly that list
`--no-deps --target` into a folder beside the layer, renamed into place when complete:
a worker starting at the same moment uses the first complete one. An outcome with a
refusal pip could not prove lasting (no network, say) is not kept, so the next start tries
again (its layer is rebuilt). Layers unused for `UNUSED_DAYS` and partial ones over an hour old are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

log = logging.getLogger(__name__)

PIP_BOUND_S = 1800.0  # one pip run; only a hang reaches it
UNUSED_DAYS = 14
PARTIAL_STALE_S = 3600.0
LAYER_RECORD = "layer.json"


@dataclass(frozen=True)
class LayerOutcome:
    site: Path | None = None
    refused: dict[str, str] = field(default_factory=dict)
    installed: list[str] = field(default_factory=list)
    cached: bool = False


def image_packages() -> dict[str, str]:
    """canonical name -> version of every distribution the running Python has installed,
    read from the `<name>-<version>.dist-info` folder names (their METADATA files only for
    the older .egg-info): ~5 ms where reading every METADATA takes ~100 ms of each start."""
    found: dict[str, str] = {}
    for folder in sys.path:
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info"):
                name, _, version = entry.removesuffix(".dist-info").partition("-")
            elif entry.endswith(".egg-info"):
                dist = metadata.PathDistribution(Path(folder or ".") / entry)
                name, version = dist.metadata["Name"] or "", dist.version
            else:
                continue
            if name and version:
                found.setdefault(canonicalize_name(name), version)
    return found


def requirements_text(path: Path, depth: int = 0) -> str:
    """A requirements file's text with the files it includes (`-r`, `-c`, beside it), so the
    layer's key and the check against the image's pins see every line."""
    text = path.read_text(errors="replace")
    for line in text.splitlines():
        option, _, included = line.strip().partition(" ")
        if option in ("-r", "--requirement", "-c", "--constraint") and included.strip() and depth < 5:
            with contextlib.suppress(OSError):
                text += "\n" + requirements_text(path.parent / included.strip(), depth + 1)
    return text


class RequirementsLayer:
    def __init__(
        self,
        envs_dir: Path,
        python: str = sys.executable,
        image: Mapping[str, str] | None = None,
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
        now: Callable[[], float] = time.time,
    ):
        self._envs_dir = envs_dir
        self._python = python
        self._image = dict(image) if image is not None else image_packages()
        self._run = run
        self._now = now

    def prepare(self, wanted: Mapping[str, Path]) -> LayerOutcome:
        texts, refused = {}, {}
        for name, path in sorted(wanted.items()):
            try:
                texts[name] = requirements_text(path)
            except OSError as error:
                refused[name] = f"its requirements.txt cannot be read ({error.strerror})"
        if not texts:
            return LayerOutcome(refused=refused)
        folder = self._envs_dir / self.key(texts)[:16]
        outcome = self._cached(folder)
        if outcome is None:
            try:
                outcome = self._build(folder, texts, wanted)
            except OSError as error:  # a read-only or full volume
                why = f"its requirements cannot be installed: the layer cannot be written ({error.strerror})"
                log.error("requirements layer %s cannot be written: %s", folder, error)
                outcome = LayerOutcome(refused=dict.fromkeys(texts, why))
        self._prune(keep=folder)
        return LayerOutcome(outcome.site, {**refused, **outcome.refused}, outcome.installed, outcome.cached)

    def key(self, texts: Mapping[str, str]) -> str:
        identity = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "torch": self._image.get("torch"),
            "image": sorted(self._image.items()),
            "requirements": sorted(texts.items()),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def _cached(self, folder: Path) -> LayerOutcome | None:
        record = folder / LAYER_RECORD
        try:
            kept = json.loads(record.read_text())
            os.utime(record)  # in use: the pruning of unused layers keeps it
        except (OSError, ValueError):
            return None
        if not kept.get("lasting", True):
            return None
        installed = list(kept.get("installed", []))
        log.info("requirements layer %s: built before (%d package(s)); no pip run", folder.name, len(installed))
        site = folder / "site-packages" if installed else None
        return LayerOutcome(site, dict(kept.get("refused", {})), installed, cached=True)

    def _build(self, folder: Path, texts: Mapping[str, str], files: Mapping[str, Path]) -> LayerOutcome:
        started = time.monotonic()
        refused = {name: why for name, text in texts.items() if (why := self.conflicts_with_image(text))}
        candidates = sorted(name for name in texts if name not in refused)
        lasting = True  # every refusal is one pip proved (a conflict), not a failure to reach an index
        self._envs_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=self._envs_dir))
        try:
            with tempfile.TemporaryDirectory() as scratch:
                pip = _Pip(self._python, Path(scratch), self._image, self._run)
                specs, failure = pip.resolve([files[name] for name in candidates]) if candidates else ([], None)
                if specs is None:  # which pack? one at a time, each beside those that fit so far
                    accepted: list[str] = []
                    specs = []
                    for name in candidates:
                        trial, failure = pip.resolve([files[kept] for kept in [*accepted, name]])
                        if trial is None:
                            assert failure is not None
                            refused[name] = f"its requirements cannot be installed beside the image's: {failure.text}"
                            lasting = lasting and failure.lasting
                        else:
                            accepted.append(name)
                            specs = trial
                    candidates = accepted
                if specs:
                    failure = pip.install(specs, partial / "site-packages")
                    if failure is not None:
                        why = f"installing its requirements failed: {failure.text}"
                        refused.update(dict.fromkeys(candidates, why))
                        specs, lasting = [], False
            outcome = LayerOutcome(folder / "site-packages" if specs else None, refused, specs)
            log.info(
                "requirements layer %s: %d package(s) for %d pack(s) in %.1f s%s",
                folder.name, len(specs), len(candidates), time.monotonic() - started,
                f": {', '.join(specs)}" if specs else "",
            )  # fmt: skip
            record = {"installed": specs, "refused": refused, "lasting": lasting}
            (partial / LAYER_RECORD).write_text(json.dumps(record, indent=1))
            if folder.exists():  # a layer whose refusals were not lasting: this start tried again
                shutil.rmtree(folder, ignore_errors=True)
            try:
                partial.rename(folder)
            except OSError:  # another worker built it at this moment: use theirs
                return self._cached(folder) or outcome
            return outcome
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def conflicts_with_image(self, text: str) -> str | None:
        """Why a requirements.txt cannot be met without replacing an image package, naming
        the requirement and the pin; None when none of its lines asks for that."""
        problems = []
        for raw in text.splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith(("#", "-")):
                continue
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue  # pip names it
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            pinned = self._image.get(canonicalize_name(requirement.name))
            if pinned is None:
                continue
            if requirement.url is not None:
                problems.append(f"'{line}' would replace the image's {requirement.name}=={pinned}")
            elif not requirement.specifier.contains(pinned, prereleases=True):
                problems.append(f"'{line}' conflicts with the image's {requirement.name}=={pinned}")
        if not problems:
            return None
        return "its requirements.txt asks to replace the image's packages, which are never replaced: " + "; ".join(
            problems
        )

    def _prune(self, keep: Path) -> None:
        """Remove layers unused for UNUSED_DAYS and partial ones left by a worker that died."""
        now = self._now()
        try:
            entries = list(os.scandir(self._envs_dir))
        except OSError:
            return
        for entry in entries:
            path = Path(entry.path)
            if path == keep or not entry.is_dir():
                continue
            try:
                if ".partial-" in entry.name:
                    stale = now - entry.stat().st_mtime > PARTIAL_STALE_S
                else:
                    stale = now - (path / LAYER_RECORD).stat().st_mtime > UNUSED_DAYS * 86400
            except OSError:
                continue
            if stale:
                log.info("removing requirements layer %s (unused)", entry.name)
                shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class _Failure:
    text: str
    lasting: bool  # a conflict pip proved, not a package it could not reach


class _Pip:
    """pip, run by the image's Python, with every image package held at its version."""

    def __init__(self, python: str, scratch: Path, image: Mapping[str, str], run: Callable[..., Any]):
        self._python = python
        self._scratch = scratch
        self._run = run
        self._constraints = scratch / "image-pins.txt"
        self._constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(image.items())))
        self._env = {key: value for key, value in os.environ.items() if key != "PIP_NO_CACHE_DIR"}
        self._calls = 0

    def resolve(self, requirement_files: list[Path]) -> tuple[list[str] | None, _Failure | None]:
        """The exact packages to install for these requirements files (none already
        installed), or None and why pip could not. The packs' own files, so a nested `-r`
        is found beside them."""
        self._calls += 1
        files = [argument for path in requirement_files for argument in ("-r", str(path))]
        report = self._scratch / f"report-{self._calls}.json"
        failure = self._pip(["--dry-run", "--report", str(report), "-c", str(self._constraints), *files])
        if failure is not None:
            return None, failure
        return [_install_spec(item) for item in json.loads(report.read_text()).get("install", [])], None

    def install(self, specs: list[str], target: Path) -> _Failure | None:
        return self._pip(["--no-deps", "--target", str(target), *specs])

    def _pip(self, arguments: list[str]) -> _Failure | None:
        # Not --quiet: it hides "The conflict is caused by:", the lines that name the pin.
        command = [self._python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
        command += ["--cache-dir", str(self._scratch / "cache"), *arguments]
        try:
            done = self._run(command, capture_output=True, text=True, env=self._env, timeout=PIP_BOUND_S)
        except subprocess.TimeoutExpired:
            return _Failure(f"pip did not finish in {PIP_BOUND_S:.0f} s", lasting=False)
        if done.returncode == 0:
            return None
        said = f"{done.stderr}\n{done.stdout}"
        return _Failure(pip_error(said), lasting="ResolutionImpossible" in said or "conflict is caused by" in said)


def _install_spec(item: dict[str, Any]) -> str:
    """What installs exactly this report entry: name==version from an index, else its URL."""
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    info = item.get("download_info") or {}
    if not item.get("is_direct"):
        return f"{name}=={version}"
    vcs = info.get("vcs_info")
    if vcs:
        return f"{name} @ {vcs['vcs']}+{info['url']}@{vcs['commit_id']}"
    return f"{name} @ {info['url']}"


def pip_error(stderr: str) -> str:
    """pip's reason in one line: the lines of a conflict ("The user requested (constraint)
    numpy==2.1.3" names the pin), else its last error."""
    if "The conflict is caused by:" in stderr:
        block = stderr.split("The conflict is caused by:", 1)[1].split("\n\n", 1)[0]
        return "; ".join(line.strip() for line in block.splitlines() if line.strip())
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors[-1] if errors else lines[-1] if lines else "pip failed").removeprefix("ERROR: ")
