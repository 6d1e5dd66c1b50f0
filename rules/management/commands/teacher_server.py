"""Run the embedded local teacher (llama_cpp.server with the bundled model) in the foreground."""
from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from rules.teacher.client import TeacherError
from rules.teacher.local import LocalTeacher


class Command(BaseCommand):
    help = "Serve the bundled teacher model on 127.0.0.1 (OpenAI-compatible) until interrupted."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, help="Port (default PLD_LOCAL_TEACHER_PORT)")
        parser.add_argument("--model-path", default="", help="A GGUF to serve instead of the bundled model")

    def handle(self, *args: Any, **options: Any) -> None:
        # A supervisor (systemd, a container runtime, scripts/demo) stops services with SIGTERM; handled
        # like Ctrl-C, from before the server starts, it stops the server process too instead of orphaning it.
        signal.signal(signal.SIGTERM, _interrupt)
        server = LocalTeacher(port=options["port"], model_path=options["model_path"])
        try:
            try:
                server.start()
            except TeacherError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(
                f"Local teacher answering on {server.base_url} (log: {server.log_path}). Ctrl-C stops it."
            )
            code = server.wait()
        except KeyboardInterrupt:
            self.stdout.write("Stopping the local teacher…")
            code = 0
        finally:
            server.stop()
        if code:
            raise CommandError(f"The local teacher exited with code {code}; see {server.log_path}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
