"""Google's own Pub/Sub emulator (``gcloud beta emulators pubsub start``): is it installed, how to run it.

It comes with the gcloud CLI as the component ``pubsub-emulator`` (Debian/apt package
``google-cloud-cli-pubsub-emulator``) and needs Java (>= 11). ``gcloud`` starts it as a Java
child process; the local cloud runs it in a process group of its own so that ``down`` stops both.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "install the gcloud CLI's Pub/Sub emulator and Java, e.g. `apt-get install google-cloud-cli-pubsub-emulator "
    "openjdk-17-jre-headless` (or `gcloud components install pubsub-emulator`)"
)


@dataclass(frozen=True)
class GoogleEmulator:
    """An installed emulator: the gcloud to start it with and the emulator's version."""

    gcloud: Path
    jar: Path
    java: Path

    @property
    def version(self) -> str:
        match = re.search(r"cloud-pubsub-emulator-([0-9][^-]*)", self.jar.name)
        return match.group(1) if match else "unknown"

    def argv(self, host: str, port: int, data_dir: Path) -> list[str]:
        return [str(self.gcloud), "beta", "emulators", "pubsub", "start", f"--host-port={host}:{port}",
                f"--data-dir={data_dir}", "--quiet"]

    @staticmethod
    def environ() -> dict[str, str]:
        """gcloud settings for an offline, unattended start (no prompt, no update check, no metrics)."""
        return {
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
        }


def find(environ: dict[str, str] | None = None) -> GoogleEmulator | None:
    """The installed emulator, or None (see ``missing`` for why)."""
    return _find(environ)[0]


def missing(environ: dict[str, str] | None = None) -> str:
    """Why Google's emulator cannot run here ("" when it can)."""
    return _find(environ)[1]


def _find(environ: dict[str, str] | None) -> tuple[GoogleEmulator | None, str]:
    environ = dict(os.environ if environ is None else environ)
    path = environ.get("PATH", os.defpath)
    gcloud = shutil.which("gcloud", path=path)
    if gcloud is None:
        return None, f"gcloud is not on PATH; {INSTALL_HINT}"
    sdk_root = Path(os.path.realpath(gcloud)).parent.parent
    jars = sorted((sdk_root / "platform" / "pubsub-emulator" / "lib").glob("cloud-pubsub-emulator-*.jar"))
    if not jars:
        return None, f"gcloud at {gcloud} has no pubsub-emulator component; {INSTALL_HINT}"
    java_home = environ.get("JAVA_HOME")
    java = shutil.which("java", path=(str(Path(java_home) / "bin") + os.pathsep + path) if java_home else path)
    if java is None:
        return None, f"the Pub/Sub emulator needs Java and none is on PATH; {INSTALL_HINT}"
    return GoogleEmulator(Path(gcloud), jars[-1], Path(java)), ""
