"""`make stress`: a bounded run through a fault-injecting proxy (not part of `make test`)."""
