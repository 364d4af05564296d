//! Transfers per second on the in-memory store, printed as a table (no assertion on time).
//! Run: `cargo bench -p idlegrid-ledger`.

use std::hint::black_box;
use std::time::Instant;

use idlegrid_ledger::*;
use idlegrid_types::{JobId, PartyId};

const TRANSFERS: u64 = 200_000;
const CLIENTS: u8 = 50;

fn party(n: u8) -> PartyId {
    PartyId::from_public_key(&[n; 32])
}

fn key(text: String) -> IdempotencyKey {
    IdempotencyKey::new(text).unwrap()
}

fn setup() -> MemoryStore {
    let mut store = MemoryStore::new();
    let mut ledger = Ledger::new(&mut store);
    ledger.open_system_accounts(0).unwrap();
    for n in 0..CLIENTS {
        let account = AccountId::Party(party(n));
        ledger.open_account(account.clone(), Some(Micros::from_units(1_000_000).unwrap()), 0).unwrap();
        ledger.deposit(key(format!("deposit:{n}")), account, Micros::from_units(1_000_000).unwrap(), 0).unwrap();
    }
    for n in 100..110 {
        ledger.open_account(AccountId::Party(party(n)), Some(Micros::ZERO), 0).unwrap();
    }
    store
}

fn charge(n: u64) -> TransferRequest {
    TransferRequest {
        key: key(format!("charge:{n}")),
        action: Action::Post {
            debit: AccountId::Party(party((n % CLIENTS as u64) as u8)),
            credit: AccountId::Platform,
            amount: Micros::new(1_000 + (n % 7) as i64),
            over_limit: OverLimit::Refuse,
        },
        purpose: Purpose::Computation,
        memo: Memo::default(),
    }
}

struct Row {
    operation: &'static str,
    count: u64,
    seconds: f64,
}

fn main() {
    let mut rows = Vec::new();

    let mut store = setup();
    let requests: Vec<TransferRequest> = (0..TRANSFERS).map(charge).collect();
    let started = Instant::now();
    {
        let mut ledger = Ledger::new(&mut store);
        for (n, request) in requests.iter().enumerate() {
            black_box(ledger.execute(request.clone(), n as u64).unwrap());
        }
    }
    rows.push(Row { operation: "post (new key)", count: TRANSFERS, seconds: started.elapsed().as_secs_f64() });

    let started = Instant::now();
    {
        let mut ledger = Ledger::new(&mut store);
        for request in &requests {
            let outcome = ledger.execute(request.clone(), 0).unwrap();
            assert!(outcome.repeated);
        }
    }
    rows.push(Row {
        operation: "retry (same key, nothing moves)",
        count: TRANSFERS,
        seconds: started.elapsed().as_secs_f64(),
    });

    // A reservation per job, settled in 9 parts, then voided: 11 transfers per job.
    let jobs = TRANSFERS / 11;
    let job_ids: Vec<JobId> = (0..jobs).map(|_| JobId::random()).collect();
    let started = Instant::now();
    {
        let mut ledger = Ledger::new(&mut store);
        for (n, job) in job_ids.iter().enumerate() {
            let payer = AccountId::Party(party((n % CLIENTS as usize) as u8));
            let id =
                ledger.reserve_job(*job, payer, Micros::new(10_000), ReservationKind::Maximum, 0).unwrap().transfer.id;
            for part in 0..9 {
                let request = TransferRequest {
                    key: key(format!("settle:{job}:{part}")),
                    action: Action::Settle { reservation: id, amount: Micros::new(1_000) },
                    purpose: Purpose::Computation,
                    memo: Memo::default(),
                };
                black_box(ledger.execute(request, 0).unwrap());
            }
            ledger.release_job(*job, 0).unwrap();
        }
    }
    rows.push(Row {
        operation: "reserve, settle x9, void",
        count: jobs * 11,
        seconds: started.elapsed().as_secs_f64(),
    });

    // Billing a day of a journal: 2000 placements of 40 minutes over 100 jobs of 20 clients.
    let config = PricingConfig::default();
    let t0 = 1_704_067_200_000u64;
    let day_ms = 86_400_000u64;
    let jobs: Vec<JobTerms> = (0..100).map(|n| JobTerms::new(JobId::random(), party((n % 20) as u8))).collect();
    let records: Vec<WorkRecord> = (0..2_000u64)
        .map(|n| {
            let launched_ms = t0 + (n * 7_919_000) % (day_ms - 3_600_000);
            let terms = &jobs[(n % 100) as usize];
            WorkRecord {
                id: n + 1,
                client: terms.client.clone(),
                job: terms.job,
                task: n / 100,
                provider: party(100 + (n % 10) as u8),
                engine: party(100 + (n % 10) as u8),
                power_gflops: 5.0 + (n % 13) as f64,
                availability: 0.95,
                launched_ms,
                cancelled_ms: None,
                concluded_ms: Some(launched_ms + 2_400_000),
                final_status: true,
                data_in_bytes: 10_000_000,
                data_out_bytes: 1_000_000,
                pay_awaits_judgement: false,
                pay_withheld: false,
            }
        })
        .collect();
    let window = BillingWindow { from_ms: t0, to_ms: t0 + day_ms };
    let started = Instant::now();
    let plan = plan_billing(&config, &records, &jobs, window, t0 + day_ms).unwrap();
    let planned = started.elapsed().as_secs_f64();
    rows.push(Row { operation: "plan_billing (lines planned)", count: plan.lines.len() as u64, seconds: planned });
    let started = Instant::now();
    let report = Ledger::new(&mut store).apply_billing(&plan, t0 + day_ms).unwrap();
    rows.push(Row {
        operation: "apply_billing (transfers made)",
        count: report.transfers_new,
        seconds: started.elapsed().as_secs_f64(),
    });

    let totals = check_balanced(&mut store).unwrap();
    println!();
    println!(
        "idlegrid-ledger, in-memory store ({} accounts, {} transfers at the end)",
        totals.accounts,
        store.transfers().len()
    );
    println!("{:<34} {:>10} {:>10} {:>14}", "operation", "count", "seconds", "per second");
    for row in rows {
        println!(
            "{:<34} {:>10} {:>10.3} {:>14.0}",
            row.operation,
            row.count,
            row.seconds,
            row.count as f64 / row.seconds
        );
    }
}
