"""An example FastAPI app that calls embedding and chat APIs through httpool.

`python -m example_app` serves it on http://127.0.0.1:8000 together with a stub of the
provider APIs (`example_app.stub_upstream`), so it runs without accounts or network.
"""
