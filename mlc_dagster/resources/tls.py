"""TLS policy shared by both resources: verification is always on for real hosts.

Plain http:// is accepted only for loopback addresses (the sandboxes), and only
when MLC_ALLOW_INSECURE_LOOPBACK is set; nothing can switch verification off
for a remote host.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse


class InsecureURLError(ValueError):
    pass


def check_url(url: str, *, allow_insecure_loopback: bool, setting: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme == "https":
        return url
    if parsed.scheme != "http" or not parsed.hostname:
        raise InsecureURLError(f"{setting} must be an https:// URL, got {url!r}")
    if not _is_loopback(parsed.hostname):
        raise InsecureURLError(
            f"{setting} uses plain http:// for a non-loopback host ({parsed.hostname}); "
            "use https:// - TLS verification cannot be turned off for real hosts"
        )
    if not allow_insecure_loopback:
        raise InsecureURLError(
            f"{setting} uses plain http:// on loopback; set MLC_ALLOW_INSECURE_LOOPBACK=1 "
            "to talk to the local sandboxes"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
