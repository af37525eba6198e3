"""Driver for scripts/bench: runs the items of issue 7 and rewrites their
sections of BENCHMARKS.md.

    bench_driver.py [ITEM...] [--runs N] [--quick] [--rows 2a,2b,...]

ITEM is 1 (service overhead), 1h (the injection against the service loading
the helper itself, head to head), 1i (item 1 counted under valgrind: instructions
and cache misses per request), 2 and 3 (per-hit cost, in-process capture: one
section), 4 (time to READY), 5 (agent footprint), 6 (pipeline throughput),
7 (scale); none means all. A benchmark never gates CI: this script exits 0
whether or not targets are met (non-zero only when a measurement could not
be made at all).
"""
import argparse
import os
import shutil
import sys
import traceback

from bench_common import Ctx, ROOT, log, write_section

ITEMS = ["1", "1h", "1i", "2", "3", "4", "5", "6", "7"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="*", help="items to run (1, 1h, 1i, 2-7); default: all")
    parser.add_argument("--runs", type=int, default=5, help="rounds per item (>= 5 for a claim)")
    parser.add_argument("--quick", action="store_true",
                        help="shorter loops and windows, for a smoke run")
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("--build", default=os.path.join(ROOT, "build-bench"),
                        help="the build directory holding pydi and the helper")
    parser.add_argument("--rows", help="items 2-3: comma-separated rows, e.g. 2a,2b")
    parser.add_argument("--profile-rounds", type=int, default=2,
                        help="items 2-3: extra rounds with kernel.bpf_stats_enabled=1")
    args = parser.parse_args()
    args.build = os.path.abspath(args.build)
    items = args.items or ITEMS
    for item in items:
        if item not in ITEMS:
            parser.error(f"no item {item!r} (items: {' '.join(ITEMS)})")

    # Others may rebuild the tree while this runs: time a private copy of pydi.
    ctx = Ctx(pydi=None, helper_dir=os.path.join(args.build, "userspace-rebind"),
              python=args.python, runs=args.runs, quick=args.quick, build_dir=args.build)
    ctx.pydi = ctx.path("pydi")
    shutil.copy2(os.path.join(args.build, "pydi"), ctx.pydi)
    ctx.rows = set(args.rows.split(",")) if args.rows else None
    ctx.profile_rounds = args.profile_rounds

    import bench_footprint
    import bench_headtohead
    import bench_hits
    import bench_instructions
    import bench_overhead
    import bench_pipeline
    import bench_ready
    import bench_scale

    plan = [("1", bench_overhead), ("1h", bench_headtohead), ("1i", bench_instructions),
            ("2-3", bench_hits), ("4", bench_ready), ("5", bench_footprint), ("6", bench_pipeline),
            ("7", bench_scale)]
    failed = []
    try:
        for key, module in plan:
            if not set(key.split("-")) & set(items):
                continue
            log(f"== item {key}")
            try:
                text = module.run(ctx)
            except Exception:  # one item failing must not lose the others
                traceback.print_exc()
                failed.append(key)
                continue
            if isinstance(text, tuple):
                text = text[1]
            write_section(key, text)
            print(text, flush=True)
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    if failed:
        log(f"items that could not be measured: {' '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
