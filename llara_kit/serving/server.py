"""Running the service: a socket, uvicorn, and an exit status that says how it ended."""

from __future__ import annotations

import errno
import signal
import socket
from pathlib import Path

import uvicorn
from rich.console import Console

from llara_kit.errors import LlaraKitError
from llara_kit.run_folder import require_finished
from llara_kit.serving.app import ServeSettings, Service, create_app


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise LlaraKitError(f"--host {host!r} is not an address here ({error.strerror}).") from None
    family, kind, proto, _, address = infos[0]
    # proto as given (IPPROTO_TCP): asyncio turns Nagle's algorithm off only on such sockets,
    # and a keep-alive client would otherwise wait for a delayed ACK on every response
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        why = ("is in use" if error.errno == errno.EADDRINUSE
               else f"cannot be used ({error.strerror})")
        raise LlaraKitError(f"Port {port} on {host} {why}; pick another with --port.") from None
    return sock


def serve(run_dir: Path, host: str, port: int, settings: ServeSettings, device: str,
          access_log: bool, console: Console) -> None:
    """Serve ``run_dir`` until SIGINT or SIGTERM, which drain the requests in flight and
    return; a run that fails to load raises its error after the server stopped."""
    require_finished(run_dir)  # before binding: a wrong folder is one sentence, at once
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    server: uvicorn.Server | None = None

    def failed(error: str) -> None:
        server.should_exit = True

    def ready(service: Service) -> None:
        console.print(f"ready: {service.recommender.run.path.name} loaded in "
                      f"{service.load_seconds:.1f} s; ranked by {service.recommender.stage}",
                      soft_wrap=True)

    service = Service(run_dir, settings, device, on_failure=failed, on_ready=ready)
    config = uvicorn.Config(create_app(service), log_level="info", access_log=access_log,
                            lifespan="on", timeout_graceful_shutdown=None)
    server = uvicorn.Server(config)
    url = f"http://{host}:{bound}"
    console.print(f"llara-kit serve: {url}/ (page), {url}/docs (API); loading {run_dir} ...; "
                  f"batches of at most {settings.max_batch}, waiting at most "
                  f"{settings.max_wait_ms:g} ms; queue of {settings.max_queue}", soft_wrap=True)
    # uvicorn raises the signal again once it has drained: handled here, so SIGTERM exits 0
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if service.status == "failed":
        raise LlaraKitError(service.error)
    batcher = service.batcher
    console.print(f"stopped: {batcher.jobs if batcher else 0} recommendation requests answered "
                  f"in {batcher.batches if batcher else 0} batches", soft_wrap=True)
