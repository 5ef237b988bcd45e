"""The transport engine: the scheduler, the HTTP/1.1 and HTTP/2 connections, dialing
(TCP, TLS, proxies, DNS), and its adapters to httpx (`PoolTransport`) and httpx2
(`Httpx2PoolTransport`). Nothing here imports the pool, the clients or the ASGI layer."""
