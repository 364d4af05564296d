#!/usr/bin/env python3
"""The trivial-task benchmark, with the Python client: N tasks that return their parameters,
from submission to the last result, and the round trip of one task, on a server and engines
started here (or a server given with --server). The same measure as ``idlegrid bench``, so
that the platform can be compared with Ray and Dask from the language their users write.

    python3 clients/python/bench.py --idlegrid target/release/idlegrid --tasks 20000

With --cli, the same job is also submitted and watched by the ``idlegrid`` command line
against the same server and engines, in the same run, for a ratio. Nothing is asserted:
machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import idlegrid
except ImportError:  # run from the repository without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    import idlegrid

from idlegrid import Client, ElementRef, JobProperties, TaskSpec
from idlegrid.local import LocalCluster

REPOSITORY = Path(__file__).resolve().parents[2]


def run_job(client: Client, noop: ElementRef, tasks: int) -> tuple[float, float, int]:
    """Seconds to submit (create, add, launch), seconds to the last result, results seen."""
    started = time.perf_counter()
    job = client.create_job(JobProperties(name="bench"))
    with client.watch(job.job, replay="none") as watch:
        client.add_tasks(job.job, (TaskSpec(i, noop, params=str(i)) for i in range(tasks)))
        client.launch(job.job)
        submitted = time.perf_counter() - started
        results = sum(1 for _ in watch.results())
    elapsed = time.perf_counter() - started
    client.remove_job(job.job)
    return submitted, elapsed, results


def round_trips(client: Client, noop: ElementRef, samples: int) -> list[float]:
    """Seconds from adding one task to a running job to its result, ``samples`` times."""
    job = client.create_job(JobProperties(name="latency"))
    client.launch(job.job)
    latencies = []
    with client.watch(job.job, replay="none") as watch:
        for index in range(samples):
            started = time.perf_counter()
            client.add_tasks(job.job, [TaskSpec(index, noop)])
            for event in watch:
                if isinstance(event, idlegrid.TaskStatus) and event.task == index and event.final:
                    break
            latencies.append(time.perf_counter() - started)
    client.remove_job(job.job)
    return sorted(latencies)


def cli_job(cluster: LocalCluster, noop_file: Path, tasks: int, folder: Path) -> float:
    """Seconds for the ``idlegrid`` command line to submit the same job and watch it to its end."""
    job_file = folder / "bench.toml"
    job_file.write_text(f'name = "bench-cli"\nexecutable = "{noop_file}"\n[tasks]\ncount = {tasks}\nparams = "{{index}}"\n')
    command = [str(cluster.binary), "--home", str(folder / "cli-home"), "--server", cluster.url]
    if cluster.ca_file is not None:
        command += ["--server-ca", str(cluster.ca_file)]
    started = time.perf_counter()
    subprocess.run(command + ["job", "submit", str(job_file), "--watch"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--idlegrid", help="the idlegrid binary (default: $IDLEGRID_BIN or target/release/idlegrid)")
    parser.add_argument("--tasks-dir", type=Path, default=REPOSITORY / "examples/tasks/target/wasm32-wasip1/release")
    parser.add_argument("--insecure-plain-http", action="store_true", help="without TLS, to see what TLS costs")
    parser.add_argument("--cli", action="store_true", help="also time the idlegrid command line on the same job")
    args = parser.parse_args()
    noop_file = args.tasks_dir / "noop.wasm"
    if not noop_file.is_file():
        sys.exit(f"no {noop_file}: build the example tasks with `cargo xtask build-tasks`")
    binary = args.idlegrid or os.environ.get("IDLEGRID_BIN") or REPOSITORY / "target/release/idlegrid"
    cores = os.cpu_count() or 1
    slots = max(cores // args.engines, 1)
    with tempfile.TemporaryDirectory(prefix="idlegrid-bench-") as folder, LocalCluster(
        binary, folder, engines=args.engines, cores=slots, prefetch=256, plain_http=args.insecure_plain_http
    ) as cluster:
        with cluster.client(poll_wait=5.0) as client:
            noop = client.upload_file(noop_file, "executable")
            # Warm up: compile the module on every engine and open the connections.
            run_job(client, noop, 50 * args.engines)
            print(f"throughput: {args.tasks} tasks on {args.engines} engines ...", file=sys.stderr)
            submitted, elapsed, results = run_job(client, noop, args.tasks)
            if results != args.tasks:
                sys.exit(f"received {results} results for {args.tasks} tasks")
            print(f"latency: {args.latency_samples} single tasks added to a running job ...", file=sys.stderr)
            latencies = round_trips(client, noop, args.latency_samples)
        cli_elapsed = cli_job(cluster, noop_file, args.tasks, Path(folder)) if args.cli else None

    percentile = lambda p: latencies[min(round(p / 100 * (len(latencies) - 1)), len(latencies) - 1)]  # noqa: E731
    print("| measure | value |")
    print("| --- | --- |")
    print(f"| machine | {cores} cores, {args.engines} engines x {slots} slots, Python {sys.version.split()[0]} |")
    print(f"| transport | {'plain HTTP (development)' if args.insecure_plain_http else 'HTTPS, mutual TLS'} |")
    print(f"| trivial tasks, submit to last result (Python client) | {args.tasks} in {elapsed:.2f} s |")
    print(f"| of which submitting (create, add, launch) | {submitted:.2f} s |")
    print(f"| throughput (Python client) | {args.tasks / elapsed:.0f} tasks/s |")
    if cli_elapsed is not None:
        print(f"| throughput (idlegrid job submit --watch, same job) | {args.tasks / cli_elapsed:.0f} tasks/s |")
        print(f"| Python client / command line | {cli_elapsed / elapsed:.2f} |")
    print(f"| single-task round trip p50 (add to result) | {percentile(50) * 1000:.1f} ms |")
    print(f"| single-task round trip p99 (add to result) | {percentile(99) * 1000:.1f} ms |")
    print(f"| single-task round trip mean | {statistics.fmean(latencies) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
