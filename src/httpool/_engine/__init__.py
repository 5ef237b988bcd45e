"""The transport engine: the scheduler, the HTTP/1.1 and HTTP/2 connections, dialing
(TCP, TLS, proxies, DNS), on plain values (`_messages`) with exceptions of its own
(`_errors`); and its adapters to httpx (`PoolTransport`) and httpx2
(`Httpx2PoolTransport`), the only modules here that import a client library. Nothing
here imports the pool, the clients or the ASGI layer."""
