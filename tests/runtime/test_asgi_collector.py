"""The web process hides what it loaded at start from the garbage collector (`gc.freeze` in
chatbot.asgi): a full collection then walks only what the answers allocate since, not the hundreds
of thousands of long-lived objects (one measured full collection took 488 ms otherwise)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.benchmarks.servers import ROOT


def test_the_web_process_freezes_what_it_loaded_at_start() -> None:
    probe = textwrap.dedent(
        """
        import gc
        import chatbot.asgi  # noqa: F401
        frozen = gc.get_freeze_count()
        loose = len(gc.get_objects())
        print(frozen, loose)
        """
    )
    env = {"DJANGO_SETTINGS_MODULE": "chatbot.settings", "DEBUG": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    frozen, loose = int(out[-2]), int(out[-1])

    assert frozen > 50_000, "Django and the project's modules are frozen"
    assert loose < frozen / 20, "little is left for a full collection to walk"
