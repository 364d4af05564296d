// The side-by-side workloads with graphile-worker, a PostgreSQL job queue for Node.js, so that
// Idlegrid's PostgreSQL mode has a job queue on the same database to be compared with.
//
// Usage: node graphile_worker.js TASKS SAMPLES   (BENCH_POSTGRES names the database)
// Prints one JSON line: tasks/s of TASKS trivial jobs (submitted in batches of 1,000 through the
// queue's own add_jobs function, two workers), and p50/p99 of SAMPLES sequential round trips
// (add one job, wait until a worker ran it). Runs in a schema of its own, dropped at the end.
"use strict";

const { run } = require("graphile-worker");
const { Pool } = require("pg");

const WORKERS = 2;
const BATCH = 1000;

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(Math.round((p / 100) * (sorted.length - 1)), sorted.length - 1)];
}

async function main() {
  const [tasks, samples] = process.argv.slice(2).map(Number);
  const url = process.env.BENCH_POSTGRES || "postgres://postgres@127.0.0.1:5432/test";
  const schema = `bench_gw_${process.pid}`;
  const pool = new Pool({ connectionString: url, max: 4 });
  let ran = 0;
  let wanted = 0;
  let wake = () => {};
  const runner = await run({
    pgPool: pool,
    schema,
    concurrency: WORKERS,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: new (require("graphile-worker").Logger)(() => () => {}),
    taskList: {
      noop: async (payload) => {
        ran += 1;
        if (ran >= wanted) wake();
        return payload;
      },
    },
  });
  const until = (count) =>
    new Promise((resolve) => {
      wanted = count;
      wake = resolve;
      if (ran >= wanted) resolve();
    });
  const add = async (first, count) => {
    await pool.query(
      `select count(*) from ${schema}.add_jobs(array(
         select ('noop', json_build_object('i', g), null, null, null, null, null, null)::${schema}.job_spec
         from generate_series($1::int, $2::int) g))`,
      [first, first + count - 1],
    );
  };
  try {
    await add(0, 200); // warm up the workers and the connections
    await until(200);
    const started = process.hrtime.bigint();
    const target = ran + tasks;
    const done = until(target);
    for (let first = 0; first < tasks; first += BATCH) {
      await add(first, Math.min(BATCH, tasks - first));
    }
    await done;
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    const latencies = [];
    for (let i = 0; i < samples; i++) {
      const t = process.hrtime.bigint();
      const finished = until(ran + 1);
      await add(i, 1);
      await finished;
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    latencies.sort((a, b) => a - b);
    console.log(
      JSON.stringify({
        tasks_per_s: tasks / elapsed,
        p50_ms: percentile(latencies, 50),
        p99_ms: percentile(latencies, 99),
      }),
    );
  } finally {
    await runner.stop();
    await pool.query(`drop schema if exists ${schema} cascade`);
    await pool.end();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
