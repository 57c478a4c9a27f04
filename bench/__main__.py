"""``python -m bench``: the GitHub App benchmarks (JSON lines; ``make bench`` runs them after
``python -m modelherd.bench``).

    python -m bench                      # everything, about a minute
    python -m bench intake github_calls  # some of them

SIGTERM is turned into an exit like Ctrl-C, so every benchmark stops its servers and removes its
temporary files however the run ends.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interruptible() -> Iterator[None]:
    """Within: SIGTERM raises ``SystemExit(143)`` (``finally`` blocks run, as on Ctrl-C)."""
    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted: servers stopped, temporary files removed", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    from bench.github_calls import bench_api_calls, bench_comment_latency
    from bench.intake import bench_intake
    from bench.rollouts import bench_rollouts

    benches = {"intake": bench_intake, "github_calls": bench_api_calls, "comment_latency": bench_comment_latency,
               "rollouts": bench_rollouts}
    parser = argparse.ArgumentParser(prog="python -m bench", description="modelherd GitHub App benchmarks")
    parser.add_argument("only", nargs="*", choices=[[], *benches], metavar="BENCH",
                        help=f"run only these ({', '.join(benches)})")
    args = parser.parse_args(argv)
    with interruptible():
        for name, bench in benches.items():
            if not args.only or name in args.only:
                bench()


if __name__ == "__main__":
    main()
