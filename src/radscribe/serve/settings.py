"""Server settings, and the rules that keep an unprotected server on this machine only."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from radscribe.serve.uploads import DEFAULT_DECODER_MEMORY_BYTES, DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_WORKING_SIDE

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None            # registered name or local folder; None: the embedded default model
    data_dir: Path = Path("radscribe-data")
    allowed_hosts: list[str] = field(default_factory=list)  # Host names besides loopback ones and ``host`` (DNS rebinding guard)
    tls: bool = False                   # served over HTTPS (session cookies are then Secure)
    insecure_http: bool = False         # allow a non-loopback bind without TLS (behind a TLS proxy; you were warned)
    template: str | None = None         # the model's template; None: the reporter's default
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES        # one upload request, all files together
    max_json_bytes: int = 1024 * 1024                       # any other request body
    max_upload_files: int = 16
    decoder_memory_bytes: int = DEFAULT_DECODER_MEMORY_BYTES  # the image decoder process's data segment cap
    cache_bytes: int = 512 * 1024 * 1024                    # decoded working copies kept in memory
    working_side: int = DEFAULT_WORKING_SIDE                # working copies are at most this many pixels per side
    queue_size: int = 8                 # model jobs waiting (beyond the running one) before 503
    job_timeout_s: float = 600.0        # a request gives up waiting for its model job after this
    rfi: bool = False                   # region-focused inference in drafts

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    def host_names(self) -> list[str]:
        """Every ``Host`` header name the server answers to: loopback names, the bind address, ``allowed_hosts``."""
        names = list(LOOPBACK_NAMES) + list(self.allowed_hosts)
        if self.host not in ("0.0.0.0", "::", ""):
            names.append(self.host)
        return list(dict.fromkeys(names))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServeSettings, has_accounts: bool) -> None:
    """Refuse to serve beyond this machine without accounts, or without TLS unless ``insecure_http`` says so."""
    if is_loopback(settings.host):
        return
    if not has_accounts:
        raise ValueError(
            f"refusing to bind to {settings.host} without user accounts: anyone who can reach it could read and sign reports. "
            f"Add one with `radscribe serve user add NAME --role radiologist --data-dir {settings.data_dir}`, or bind to 127.0.0.1"
        )
    if not settings.tls and not settings.insecure_http:
        raise ValueError(
            f"refusing to bind to {settings.host} over plain HTTP: passwords and reports would cross the network in clear. "
            "Pass --ssl-certfile and --ssl-keyfile (or --insecure-http behind a TLS proxy)"
        )
