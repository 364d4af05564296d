"""Side-by-side benchmark of Idlegrid against Ray, Dask and Celery on this machine.

Every system runs the same two workloads, one system at a time, in a process of its own:
  throughput  N trivial tasks (each returns its argument), submit to all results back, 2 workers
  round trip  S tasks one after another, each submitted only when the previous result is back;
              p50 and p99 of submit-to-result
Idlegrid runs them through `idlegrid bench` (server, 2 engines and a client on loopback, durable
state), on SQLite and on PostgreSQL with 1, 2 and 3 server instances. Run it through run.sh,
which prepares the virtualenv and the binary. Nothing here is a test: machines are noisy, so
compare figures of one run only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ["idlegrid-sqlite", "idlegrid-pg1", "idlegrid-pg2", "idlegrid-pg3", "ray", "dask", "celery"]
WORKERS = 2


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    rank = round(p / 100.0 * (len(sorted_values) - 1))
    return sorted_values[min(rank, len(sorted_values) - 1)]


def summary(tasks, elapsed, latencies):
    latencies = sorted(latencies)
    return {
        "tasks_per_s": tasks / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def noop(i):
    return i


# ---- one system per process: `compare.py --worker NAME` prints one JSON line


def run_ray(tasks, samples):
    import ray

    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    remote = ray.remote(noop)
    ray.get([remote.remote(i) for i in range(200)])  # warm up the workers
    started = time.perf_counter()
    results = ray.get([remote.remote(i) for i in range(tasks)])
    elapsed = time.perf_counter() - started
    assert len(results) == tasks
    latencies = []
    for i in range(samples):
        t = time.perf_counter()
        ray.get(remote.remote(i))
        latencies.append(time.perf_counter() - t)
    ray.shutdown()
    return summary(tasks, elapsed, latencies)


def run_dask(tasks, samples):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.gather(client.map(noop, range(200), pure=False))
            started = time.perf_counter()
            results = client.gather(client.map(noop, range(tasks), pure=False))
            elapsed = time.perf_counter() - started
            assert len(results) == tasks
            latencies = []
            for i in range(samples):
                t = time.perf_counter()
                client.submit(noop, i, pure=False).result()
                latencies.append(time.perf_counter() - t)
    return summary(tasks, elapsed, latencies)


def run_celery(tasks, samples):
    redis = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15")
    queue = "bench-" + uuid.uuid4().hex[:8]
    env = dict(os.environ, BENCH_REDIS=redis, PYTHONPATH=HERE)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--concurrency", str(WORKERS),
         "--pool", "prefork", "-Q", queue, "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip",
         "--without-mingle"],
        env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sys.path.insert(0, HERE)
        os.environ["BENCH_REDIS"] = redis
        from celery_app import noop as task

        [r.get(timeout=120) for r in [task.apply_async((i,), queue=queue) for i in range(200)]]
        started = time.perf_counter()
        pending = [task.apply_async((i,), queue=queue) for i in range(tasks)]
        results = [r.get(timeout=600) for r in pending]
        elapsed = time.perf_counter() - started
        assert len(results) == tasks
        latencies = []
        for i in range(samples):
            t = time.perf_counter()
            task.apply_async((i,), queue=queue).get(timeout=60)
            latencies.append(time.perf_counter() - t)
        return summary(tasks, elapsed, latencies)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def postgres_schema(url, action):
    """Create (fresh) or drop the schema this run uses; returns the URL that selects it."""
    schema = "bench_" + str(os.getpid())
    sql = f"DROP SCHEMA IF EXISTS {schema} CASCADE" + ("" if action == "drop" else f"; CREATE SCHEMA {schema}")
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", "SET client_min_messages = warning; " + sql],
                   check=True, stdout=subprocess.DEVNULL)
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def run_idlegrid(name, tasks, samples):
    binary = os.environ.get("IDLEGRID_BIN", os.path.join(HERE, "..", "target", "release", "idlegrid"))
    command = [binary, "bench", "--tasks", str(tasks), "--engines", str(WORKERS), "--latency-samples", str(samples)]
    url = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
    instances = {"idlegrid-pg1": 1, "idlegrid-pg2": 2, "idlegrid-pg3": 3}.get(name)
    if instances:
        command += ["--database", postgres_schema(url, "create"), "--instances", str(instances)]
    try:
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed:\n{run.stderr[-3000:]}")
        out = run.stdout
    finally:
        if instances:
            postgres_schema(url, "drop")

    def figure(label):
        match = re.search(r"^\| " + re.escape(label) + r" \| ([0-9.]+)", out, re.MULTILINE)
        if not match:
            raise RuntimeError(f"`{' '.join(command)}` printed no '{label}':\n{out}")
        return float(match.group(1))

    return {
        "tasks_per_s": figure("throughput"),
        "p50_ms": figure("single-task round trip p50 (add to result)"),
        "p99_ms": figure("single-task round trip p99 (add to result)"),
    }


def worker(name, tasks, samples):
    if name.startswith("idlegrid"):
        return run_idlegrid(name, tasks, samples)
    return {"ray": run_ray, "dask": run_dask, "celery": run_celery}[name](tasks, samples)


# ---- the driver


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks of the throughput workload")
    parser.add_argument("--samples", type=int, default=1_000, help="sequential tasks of the round-trip workload")
    parser.add_argument("--only", default="", help="comma-separated systems to run (default all)")
    parser.add_argument("--skip", default="", help="comma-separated systems to leave out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.tasks, args.samples)))
        return

    chosen = [s for s in (args.only.split(",") if args.only else SYSTEMS) if s]
    skip = set(s for s in args.skip.split(",") if s)
    unknown = [s for s in chosen + list(skip) if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    figures = {}
    for name in chosen:
        if name in skip:
            continue
        print(f"bench: {name}: {args.tasks} tasks, then {args.samples} round trips ...", file=sys.stderr, flush=True)
        run = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--tasks", str(args.tasks), "--samples", str(args.samples)],
            capture_output=True, text=True)
        if run.returncode != 0:
            print(f"bench: {name} failed:\n{run.stderr[-3000:]}", file=sys.stderr)
            continue
        figures[name] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"bench: {name}: {json.dumps(figures[name])}", file=sys.stderr, flush=True)

    base_name = "idlegrid-sqlite" if "idlegrid-sqlite" in figures else next(iter(figures), None)
    if base_name is None:
        sys.exit("bench: nothing ran")
    base = figures[base_name]
    print(f"\n{args.tasks} trivial tasks with {WORKERS} workers; {args.samples} sequential round trips; "
          f"{os.cpu_count()} cores; one run, loopback only")
    print(f"| system | tasks/s | throughput: {base_name} / system | round trip p50 ms | p99 ms "
          f"| p50: system / {base_name} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, f in figures.items():
        print(f"| {name} | {f['tasks_per_s']:.0f} | {base['tasks_per_s'] / f['tasks_per_s']:.2f}x | "
              f"{f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['p50_ms'] / base['p50_ms']:.2f}x |")


if __name__ == "__main__":
    main()
