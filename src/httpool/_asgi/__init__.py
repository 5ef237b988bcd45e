"""The ASGI layer: the lifespan and `get_pool`, the route dependencies, the streaming
responses and the error handlers. It uses the pool; nothing below imports it."""
