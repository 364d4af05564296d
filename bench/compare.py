"""Side-by-side benchmark of Idlegrid against Ray, Dask, Celery and graphile-worker on this machine.

Every system runs the same two workloads, one system at a time, in a process of its own:
  throughput  N trivial tasks (each returns its argument), submit to all results back, 2 workers
  round trip  S tasks one after another, each submitted only when the previous result is back;
              p50 and p99 of submit-to-result
Idlegrid runs them through `idlegrid bench` (server, 2 engines and a client on loopback, durable
state), on SQLite and on PostgreSQL with 1, 2 and 3 server instances. Two larger workloads are
opt-in, since they take minutes:
  --large-tasks N   N trivial tasks (a million, say) with Idlegrid's server, 2 engines and the CLI
                    client as separate processes, and the same N with each other system chosen;
                    throughput and the peak resident memory of client and server
  --submit-tasks N  Idlegrid only: how fast the CLI submits a job of N tasks (ten million, say),
                    and the peak memory of client and server while it does
Run it through run.sh, which prepares the virtualenv and the binary. Nothing here is a test:
machines are noisy, so compare figures of one run only.
"""

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ["idlegrid-sqlite", "idlegrid-pg1", "idlegrid-pg2", "idlegrid-pg3", "ray", "dask", "celery",
           "graphile-worker"]
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


def run_graphile_worker(tasks, samples):
    """graphile-worker, a PostgreSQL job queue (Node.js), installed by run.sh under bench/.node."""
    modules = os.environ.get("BENCH_NODE_MODULES", os.path.join(HERE, ".node", "node_modules"))
    run = subprocess.run(["node", os.path.join(HERE, "graphile_worker.js"), str(tasks), str(samples)],
                         env=dict(os.environ, NODE_PATH=modules), capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"graphile-worker failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


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


OTHERS = {"ray": run_ray, "dask": run_dask, "celery": run_celery, "graphile-worker": run_graphile_worker}


def peak_mb(pid):
    """Peak resident memory of a live process, from /proc (MB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, deadline_s=120):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}) before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on port {port} within {deadline_s} s")


def run_idlegrid_processes(tasks, engines, watch):
    """A server, `engines` engines and the CLI client, each its own process: submit a job of
    `tasks` trivial tasks (and, with `watch`, wait for every result). Returns tasks/s over the
    client's whole run and the peak memory of client and server."""
    binary = os.environ.get("IDLEGRID_BIN", os.path.join(HERE, "..", "target", "release", "idlegrid"))
    tasks_dir = os.environ.get("IDLEGRID_TASKS_DIR",
                               os.path.join(HERE, "..", "examples", "tasks", "target", "wasm32-wasip1", "release"))
    work = tempfile.mkdtemp(prefix="idlegrid-bench-")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    try:
        server = subprocess.Popen([binary, "server", "--listen", f"127.0.0.1:{port}", "--data",
                                   os.path.join(work, "server"), "--log", "warn"], **quiet)
        children.append(server)
        wait_for_port(port, server)
        for n in range(engines):
            children.append(subprocess.Popen(
                [binary, "--server", url, "engine", "--data", os.path.join(work, f"engine-{n}"), "--cores", "1",
                 "--prefetch", "128", "--status-listen", "off", "--log", "warn"], **quiet))
        job = os.path.join(work, "job.toml")
        with open(job, "w") as f:
            f.write(f'name = "bench"\nexecutable = "{os.path.join(tasks_dir, "noop.wasm")}"\n'
                    f'[tasks]\ncount = {tasks}\nparams = "{{index}}"\n')
        command = [binary, "--server", url, "--home", os.path.join(work, "home"), "job", "submit", job]
        if watch:
            command.append("--watch")
        started = time.perf_counter()
        client = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # wait4 gives this one child's peak memory; its stderr is small (errors only, no terminal).
        _, status, usage = os.wait4(client.pid, 0)
        elapsed = time.perf_counter() - started
        client.returncode = os.waitstatus_to_exitcode(status)
        if client.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed:\n{client.stderr.read().decode()[-3000:]}")
        return {"tasks_per_s": tasks / elapsed, "client_mb": usage.ru_maxrss / 1024.0,
                "server_mb": peak_mb(server.pid), "seconds": elapsed}
    finally:
        for child in children:
            child.kill()
            child.wait()
        shutil.rmtree(work, ignore_errors=True)


def driver_memory(result):
    """Add the driver's peak memory: this process for Ray, Dask and Celery, the Node.js process
    (a child) for graphile-worker."""
    result["client_mb"] = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0
    result["server_mb"] = float("nan")
    return result


def worker(name, tasks, samples, mode):
    if mode == "submit":
        return run_idlegrid_processes(tasks, engines=0, watch=False)
    if mode == "large":
        if name.startswith("idlegrid"):
            return run_idlegrid_processes(tasks, engines=WORKERS, watch=True)
        return driver_memory(OTHERS[name](tasks, 1))
    if name.startswith("idlegrid"):
        return run_idlegrid(name, tasks, samples)
    return OTHERS[name](tasks, samples)


# ---- the driver


def run_worker(name, tasks, samples, mode):
    """Run one system's workload in a process of its own; its figures, or None if it failed."""
    run = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--mode", mode, "--tasks", str(tasks), "--samples", str(samples)],
        capture_output=True, text=True)
    if run.returncode != 0:
        print(f"bench: {name} ({mode}) failed:\n{run.stderr[-3000:]}", file=sys.stderr)
        return None
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"bench: {name} ({mode}): {json.dumps(figures)}", file=sys.stderr, flush=True)
    return figures


def print_small(figures, args):
    base_name = "idlegrid-sqlite" if "idlegrid-sqlite" in figures else next(iter(figures))
    base = figures[base_name]
    print(f"\n{args.tasks} trivial tasks with {WORKERS} workers; {args.samples} sequential round trips; "
          f"{os.cpu_count()} cores; one run, loopback only")
    print(f"| system | tasks/s | throughput: {base_name} / system | round trip p50 ms | p99 ms "
          f"| p50: system / {base_name} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, f in figures.items():
        print(f"| {name} | {f['tasks_per_s']:.0f} | {base['tasks_per_s'] / f['tasks_per_s']:.2f}x | "
              f"{f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['p50_ms'] / base['p50_ms']:.2f}x |")


def print_large(figures, tasks):
    base_name = "idlegrid-sqlite" if "idlegrid-sqlite" in figures else next(iter(figures))
    base = figures[base_name]
    print(f"\n{tasks} trivial tasks with {WORKERS} workers, submit to last result; Idlegrid as separate "
          f"processes (server, engines, CLI client); client memory of the others is their driver's")
    print(f"| system | tasks/s | throughput: {base_name} / system | client peak MB | server peak MB |")
    print("| --- | --- | --- | --- | --- |")
    for name, f in figures.items():
        print(f"| {name} | {f['tasks_per_s']:.0f} | {base['tasks_per_s'] / f['tasks_per_s']:.2f}x | "
              f"{f['client_mb']:.1f} | {f['server_mb']:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks of the throughput workload (0: leave out both small workloads)")
    parser.add_argument("--samples", type=int, default=1_000, help="sequential tasks of the round-trip workload")
    parser.add_argument("--large-tasks", type=int, default=0,
                        help="also run N tasks with Idlegrid as separate processes and with each other system, "
                             "with peak memory (0: skip)")
    parser.add_argument("--submit-tasks", type=int, default=0,
                        help="also time the CLI's submission of an N-task job (0: skip)")
    parser.add_argument("--only", default="", help="comma-separated systems to run (default all)")
    parser.add_argument("--skip", default="", help="comma-separated systems to leave out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="small", choices=["small", "large", "submit"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.tasks, args.samples, args.mode)))
        return

    chosen = [s for s in (args.only.split(",") if args.only else SYSTEMS) if s]
    skip = set(s for s in args.skip.split(",") if s)
    unknown = [s for s in chosen + list(skip) if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    chosen = [s for s in chosen if s not in skip]

    small = {}
    for name in (chosen if args.tasks else []):
        print(f"bench: {name}: {args.tasks} tasks, then {args.samples} round trips ...", file=sys.stderr, flush=True)
        figures = run_worker(name, args.tasks, args.samples, "small")
        if figures:
            small[name] = figures
    large = {}
    if args.large_tasks:
        # Idlegrid's large run uses the embedded store; PostgreSQL's figures are in the first table.
        for name in [s for s in chosen if not s.startswith("idlegrid-pg")]:
            print(f"bench: {name}: {args.large_tasks} tasks with peak memory ...", file=sys.stderr, flush=True)
            figures = run_worker(name, args.large_tasks, 0, "large")
            if figures:
                large[name] = figures
    submitted = None
    if args.submit_tasks:
        print(f"bench: idlegrid: submitting {args.submit_tasks} tasks ...", file=sys.stderr, flush=True)
        submitted = run_worker("idlegrid-sqlite", args.submit_tasks, 0, "submit")

    if not (small or large or submitted):
        sys.exit("bench: nothing ran")
    if small:
        print_small(small, args)
    if large:
        print_large(large, args.large_tasks)
    if submitted:
        print(f"\nSubmission of a {args.submit_tasks}-task job by the CLI (SQLite server, no engines)")
        print("| tasks | seconds | tasks/s | client peak MB | server peak MB |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| {args.submit_tasks} | {submitted['seconds']:.1f} | {submitted['tasks_per_s']:.0f} | "
              f"{submitted['client_mb']:.1f} | {submitted['server_mb']:.1f} |")


if __name__ == "__main__":
    main()
