"""``python -m bench``: start the local upstreams, run the sections, report, stop everything.

Sections: ``client`` (throughput of each client variant), ``e2e`` (a FastAPI route
loaded by wrk), ``connections`` (upstream connections per 1,000 requests, counted by the
server), ``latency`` (pooled versus per-request clients over a slow TLS link, and the
first request with and without a connection opened in advance).

A full run writes ``bench/results/latest.json``, the plots in ``docs/img/bench/`` and the
figures block of ``docs/performance.md``. ``--quick`` (a smoke run under a minute) and
``--only`` write ``bench/results/partial.json`` and leave the docs alone unless asked.

``--baseline REV`` adds ``httpool@REV`` (that revision's ``src/httpool``, run in processes
of its own) beside ``httpool`` in the client and e2e sections, on every upstream, in the
same interleaved rounds; such a run writes ``bench/results/compare.json`` (``partial.json``
with ``--quick``) and leaves the docs alone unless asked.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any, Final

from . import client_level, connections, e2e, latency, proxy, ratelimit
from .baseline import Tree, check_import, current_tree, export
from .certs import make_certs
from .docs_page import update_page
from .goals import evaluate
from .plots import write_plots
from .procs import ROOT, Child, Supervisor, python
from .report import machine_info, render_text, write_json
from .servers import UPSTREAMS, start_upstreams
from .settings import FULL, QUICK, Settings

SECTIONS: Final = ("client", "e2e", "connections", "latency", "ratelimit", "proxy")
RESULTS: Final = ROOT / "bench" / "results"
IMAGES: Final = ROOT / "docs" / "img" / "bench"
PAGE: Final = ROOT / "docs" / "performance.md"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 60 s)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per cell")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run httpool as it is on git revision REV (a commit, branch or tag), "
        "as variant httpool@REV in the client and e2e sections, on every upstream",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="run nothing: print, plot and write the docs from an earlier results file",
    )
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write the plots and docs/performance.md (default: only on a full run)",
    )
    return parser.parse_args(argv)


def _upstream_kinds(sections: tuple[str, ...], settings: Settings) -> list[str]:
    kinds: list[str] = []
    if "client" in sections:
        kinds += settings.client_upstreams
        kinds += settings.same_server_upstreams
    if "e2e" in sections:
        kinds.append("h1")
    if "connections" in sections:
        kinds += settings.count_upstreams
    if "latency" in sections:
        kinds.append("h1-tls")
    return list(dict.fromkeys(kinds))


def _check_httpool() -> None:
    try:
        import httpool

        httpool.PoolTransport  # noqa: B018 - resolved lazily by the package
    except (ImportError, AttributeError) as exc:
        sys.exit(f"httpool.PoolTransport is not importable yet ({exc}); nothing to compare")


class Interrupted(BaseException):
    """SIGTERM or SIGINT: unwinds through the `with` blocks that stop the children."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _loadgen(
    sup: Supervisor,
    tree: Tree,
    name: str,
    imported: dict[str, dict[str, str]],
    seed: int | None = None,
) -> Child:
    """A load generator that imports httpool from `tree`, checked before it is used;
    with `seed`, its ``PYTHONHASHSEED``."""
    env = tree.env if seed is None else {**tree.env, "PYTHONHASHSEED": str(seed)}
    worker = sup.start(name, python("-m", "bench.loadgen"), env=env, worker=True)
    found = worker.call({"op": "whoami"}, timeout=60)["httpool_file"]
    check_import(tree, f"the load generator {name}", found)
    imported.setdefault(tree.label, {})[name] = found
    return worker


class _TreeLoadgens:
    """A load generator per tree, started afresh for each round (`FreshProcesses`)."""

    def __init__(
        self, sup: Supervisor, trees: tuple[Tree, ...], imported: dict[str, dict[str, str]]
    ) -> None:
        self._sup, self._trees, self._imported = sup, trees, imported

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self._trees]

    def start(self, seed: int) -> dict[str, Child]:
        return {
            t.label: _loadgen(self._sup, t, f"loadgen-{t.label}", self._imported, seed)
            for t in self._trees
        }

    def stop(self, children: dict[str, Child]) -> None:
        for child in children.values():
            self._sup.stop(child)


def run(
    sections: tuple[str, ...], settings: Settings, baseline_rev: str | None = None
) -> dict[str, Any]:
    """Run `sections` with `settings`; every process started is stopped on the way out.

    With `baseline_rev`, that revision's httpool runs beside this checkout's in the
    client and e2e sections (`bench.baseline`).
    """
    results: dict[str, Any] = {"meta": machine_info(ROOT), "sections": list(sections)}
    results["settings"] = {k: getattr(settings, k) for k in settings.__dataclass_fields__}
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="httpool-bench-") as tmp,
        Supervisor(Path(tmp)) as sup,
    ):
        section_s: dict[str, float] = {}  # how long each section took, for planning runs
        trees: tuple[Tree, ...] = ()
        imported: dict[str, dict[str, str]] = {}  # tree label -> process -> httpool.__file__
        if baseline_rev is not None:
            trees = (current_tree(), export(baseline_rev, Path(tmp) / "baseline"))
            print(
                f"baseline {trees[1].label}: {trees[1].commit[:12]} in {trees[1].src}",
                file=sys.stderr,
            )
        certs = make_certs(Path(tmp))
        print("starting upstreams ...", file=sys.stderr)
        upstreams = start_upstreams(sup, certs, _upstream_kinds(sections, settings))
        if trees:
            worker = _loadgen(sup, trees[0], "loadgen", imported)
        else:
            worker = sup.start("loadgen", python("-m", "bench.loadgen"), worker=True)
        if "client" in sections:
            print("client level ...", file=sys.stderr)
            mark = time.monotonic()
            # with a baseline, each httpool tree gets a load generator to itself, alike,
            # a new one every round
            fresh = _TreeLoadgens(sup, trees, imported) if trees else None
            results["client"] = client_level.run(worker, upstreams, settings, fresh)
            section_s["client"] = time.monotonic() - mark
        if "e2e" in sections:
            print("end to end ...", file=sys.stderr)
            mark = time.monotonic()
            results["e2e"] = e2e.run(sup, upstreams["h1"], settings, trees, imported)
            section_s["e2e"] = time.monotonic() - mark
        if "connections" in sections:
            print("connections ...", file=sys.stderr)
            mark = time.monotonic()
            results["connections"] = connections.run(worker, upstreams, settings)
            section_s["connections"] = time.monotonic() - mark
        if "latency" in sections:
            print("latency ...", file=sys.stderr)
            mark = time.monotonic()
            results["latency"] = latency.run(sup, worker, upstreams["h1-tls"], settings)
            section_s["latency"] = time.monotonic() - mark
        if "ratelimit" in sections:
            print("rate limits ...", file=sys.stderr)
            results["ratelimit"] = ratelimit.run(sup)
        if "proxy" in sections:
            print("through a CONNECT proxy ...", file=sys.stderr)
            results["proxy"] = proxy.run(rounds=settings.rounds)
    if trees:
        results["baseline"] = trees[1].label
        results["trees"] = {t.label: {**t.meta(), "imported_by": imported[t.label]} for t in trees}
    results["meta"]["duration_s"] = time.monotonic() - started
    results["meta"]["section_s"] = section_s
    results["meta"]["load_average_end"] = list(os.getloadavg())
    results["goals"] = evaluate(results)
    return results


def _publish(results: dict[str, Any], *, docs: bool) -> None:
    if docs:
        for path in write_plots(results, IMAGES):
            print(f"plot: {path}", file=sys.stderr)
        if "ratelimit" in results:
            print(f"plot: {ratelimit.plot(results['ratelimit'], IMAGES)}", file=sys.stderr)
        if update_page(PAGE, results):
            print(f"figures written into {PAGE}", file=sys.stderr)
        else:
            print(f"{PAGE} has no results markers; left as it is", file=sys.stderr)
    print(render_text(results))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        results["goals"] = evaluate(results)  # goals are derived: judge with today's rules
        _publish(results, docs=args.docs is not False)
        return 0
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = settings.replace(rounds=args.rounds)
    sections = tuple(s for s in SECTIONS if not args.only or s in args.only)
    if args.baseline is not None:
        if not {"client", "e2e"} & set(sections):
            sys.exit("--baseline compares the client and e2e sections; add --only client or e2e")
        # the HTTP/2 goal's ratio needs h2-tls against h1-tls, also in a --quick run
        settings = settings.replace(client_upstreams=UPSTREAMS)
    full = not args.quick and not args.only and args.baseline is None
    # also when started from a shell that ignores SIGINT for background jobs
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    _check_httpool()
    try:
        results = run(sections, settings, args.baseline)
    except Interrupted as exc:
        print(f"{exc}: every process the bench started has been stopped", file=sys.stderr)
        return exc.code
    name = "latest" if full else "compare" if args.baseline and not args.quick else "partial"
    out = args.out or RESULTS / f"{name}.json"
    write_json(results, out)
    print(f"results: {out}", file=sys.stderr)
    _publish(results, docs=args.docs if args.docs is not None else full)
    if args.quick:
        print(
            "\n(--quick: one round of short runs, a smoke test; its verdicts are not the bench's)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
