"""SOCKS4, SOCKS4a and SOCKS5 (local or remote DNS) through python-socks.

python-socks (maintained, asyncio-native) connects to the SOCKS server and does the
handshake; the socket it gives back, already connected to the target, becomes one of
httpool's asyncio streams. `socks5h://` and `socks4a://` let the proxy resolve the
target's name; `socks5://` and `socks4://` resolve it here.
"""

from __future__ import annotations

import asyncio

from . import _errors
from ._asyncio_backend import AsyncioBackend
from ._errors import ConnectTimeout
from ._network import NetworkStream
from ._proxy import ProxyConf
from ._records import Origin

__all__ = ["open_socks"]

_TYPES = {"socks5": "SOCKS5", "socks5h": "SOCKS5", "socks4": "SOCKS4", "socks4a": "SOCKS4"}
_REMOTE_DNS = frozenset({"socks5h", "socks4a"})


async def open_socks(
    via: ProxyConf,
    origin: Origin,
    seconds: float | None,
    *,
    local_address: str | None = None,
) -> NetworkStream:
    """A stream to `origin` through the SOCKS proxy `via`."""
    try:
        from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
        from python_socks.async_.asyncio import Proxy
    except ImportError:  # pragma: no cover - an extra
        msg = f"the SOCKS proxy {via.label} needs python-socks: pip install 'httpool[socks]'"
        raise _errors.ProxyError(msg) from None
    user, password = via.auth or (None, None)
    proxy = Proxy(
        ProxyType[_TYPES[via.scheme]],
        via.host,
        via.port,
        username=user,
        password=password,
        rdns=via.scheme in _REMOTE_DNS,
        loop=asyncio.get_running_loop(),
    )
    target = origin.host.decode("ascii")
    local = (local_address, 0) if local_address else None
    try:
        sock = await proxy.connect(target, origin.port, timeout=seconds, local_addr=local)
    except ProxyTimeoutError:
        msg = f"the SOCKS proxy {via.label} did not connect to {target}:{origin.port} in time"
        raise ConnectTimeout(msg) from None
    except ProxyConnectionError as exc:
        msg = f"could not connect to the SOCKS proxy {via.label}: {exc.strerror or exc}"
        raise _errors.ProxyError(msg) from None
    except (ProxyError, OSError) as exc:
        msg = f"the SOCKS proxy {via.label} refused {target}:{origin.port}: {exc}"
        raise _errors.ProxyError(msg) from None
    return await AsyncioBackend().connect_socket(sock, seconds)
