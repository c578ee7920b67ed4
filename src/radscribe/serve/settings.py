"""Server settings, and the rule that keeps an unprotected server on the loopback interface."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from radscribe.serve.uploads import DEFAULT_MAX_UPLOAD_BYTES


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None            # registered name or local folder; None: the embedded default model
    data_dir: Path = Path("radscribe-data")
    token: str | None = None            # required on every request when set (header or cookie)
    insecure: bool = False              # allow a non-loopback bind without a token (you were warned)
    template: str | None = None         # the model's template; None: the reporter's default
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    queue_size: int = 8                 # model jobs waiting (beyond the running one) before 503
    job_timeout_s: float = 600.0        # a request gives up waiting for its model job after this
    rfi: bool = False                   # region-focused inference in drafts

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServeSettings) -> None:
    """Refuse to serve beyond this machine without a token, unless ``insecure`` says so explicitly."""
    if not is_loopback(settings.host) and not settings.token and not settings.insecure:
        raise ValueError(
            f"refusing to bind to {settings.host} without --token: anyone who can reach it could read reports. "
            "Pass --token TOKEN (or --insecure if you really mean it), or bind to 127.0.0.1"
        )
