"""Operations: the router (health, stats, status page), Prometheus metrics, static files."""
