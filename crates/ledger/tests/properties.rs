//! Property tests: any interleaving of reservations, settlements, voids, transfers, retries and
//! crashes keeps the ledger balanced and charges each unit of work exactly once; billing a
//! journal bit by bit, with crashes, charges what billing it in one go charges.

use std::collections::{BTreeMap, BTreeSet};

use idlegrid_ledger::*;
use idlegrid_types::{JobId, PartyId};
use proptest::prelude::*;

fn party(n: u8) -> PartyId {
    PartyId::from_public_key(&[n; 32])
}

fn client_account(n: usize) -> AccountId {
    AccountId::Party(party(n as u8 + 1))
}

fn provider_account(n: usize) -> AccountId {
    AccountId::Party(party(n as u8 + 100))
}

const CLIENTS: usize = 3;
const PROVIDERS: usize = 2;
const JOBS: usize = 4;

/// Account balances as the transfer log says they must be.
fn rebuild_from_log(store: &MemoryStore) -> BTreeMap<AccountId, [i64; 4]> {
    let mut sums: BTreeMap<AccountId, [i64; 4]> = BTreeMap::new();
    for t in store.transfers() {
        let posted = t.posted.as_i64();
        let pending = t.reserved.as_i64() - t.from_reservation.as_i64() - t.released.as_i64();
        let debit = sums.entry(t.debit.clone()).or_default();
        debit[0] += posted;
        debit[2] += pending;
        let credit = sums.entry(t.credit.clone()).or_default();
        credit[1] += posted;
        credit[3] += pending;
    }
    sums
}

/// The invariants that must hold in every committed state.
fn check_state(store: &mut MemoryStore, sent: &BTreeMap<IdempotencyKey, TransferRequest>) -> Result<(), TestCaseError> {
    check_balanced(store).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let rebuilt = rebuild_from_log(store);
    for account in store.accounts_ref() {
        let expected = rebuilt.get(&account.id).copied().unwrap_or_default();
        let actual = [
            account.debits_posted.as_i64(),
            account.credits_posted.as_i64(),
            account.debits_pending.as_i64(),
            account.credits_pending.as_i64(),
        ];
        prop_assert_eq!(actual, expected, "account {} differs from its transfer log", account.id);
        prop_assert!(account.debits_pending.as_i64() >= 0 && account.credits_pending.as_i64() >= 0);
        if (0..PROVIDERS).any(|n| provider_account(n) == account.id) {
            // Providers are debited only by transfers that respect the limit.
            prop_assert!(account.available().unwrap().as_i64() >= 0, "provider {} below zero", account.id);
        }
    }
    let mut keys = BTreeSet::new();
    for transfer in store.transfers() {
        prop_assert!(keys.insert(transfer.key().clone()), "key {} used twice", transfer.key());
        prop_assert_eq!(sent.get(transfer.key()), Some(&transfer.request), "a transfer nobody asked for");
        if let Action::Reserve { .. } = transfer.request.action {
            let mut store = store.clone();
            let reservation = store.reservation(transfer.id).unwrap().unwrap();
            prop_assert!(reservation.remaining().unwrap().as_i64() >= 0);
            if reservation.kind == ReservationKind::Maximum {
                prop_assert!(reservation.settled().unwrap() <= reservation.amount, "a maximum was exceeded");
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        client: usize,
        amount: i64,
    },
    Reserve {
        job: usize,
        amount: i64,
        maximum: bool,
    },
    /// A unit of work charged to a job: settles its reservation, or is posted directly.
    Work {
        job: usize,
        amount: i64,
    },
    Void {
        job: usize,
    },
    Pay {
        provider: usize,
        amount: i64,
    },
    Barter {
        provider: usize,
        client: usize,
        amount: i64,
    },
    Payout {
        provider: usize,
        amount: i64,
    },
    /// Send an earlier request again.
    Retry {
        back: usize,
    },
    /// Send an earlier request's key with other content: refused if the key was used.
    Tamper {
        back: usize,
    },
    /// The next request's transaction is lost; the process restarts and replays everything.
    CrashBeforeCommit,
    /// The next request commits but the process dies before it knows; it restarts and replays
    /// everything.
    CrashAfterCommit,
}

fn op() -> impl Strategy<Value = Op> {
    let amount = 1i64..5_000_000;
    prop_oneof![
        1 => (0..CLIENTS, amount.clone()).prop_map(|(client, amount)| Op::Deposit { client, amount }),
        1 => (0..JOBS, amount.clone(), any::<bool>()).prop_map(|(job, amount, maximum)| Op::Reserve { job, amount, maximum }),
        4 => (0..JOBS, amount.clone()).prop_map(|(job, amount)| Op::Work { job, amount }),
        1 => (0..JOBS).prop_map(|job| Op::Void { job }),
        1 => (0..PROVIDERS, amount.clone()).prop_map(|(provider, amount)| Op::Pay { provider, amount }),
        1 => (0..PROVIDERS, 0..CLIENTS, amount.clone()).prop_map(|(provider, client, amount)| Op::Barter { provider, client, amount }),
        1 => (0..PROVIDERS, amount).prop_map(|(provider, amount)| Op::Payout { provider, amount }),
        2 => (0usize..20).prop_map(|back| Op::Retry { back }),
        1 => (0usize..20).prop_map(|back| Op::Tamper { back }),
        1 => Just(Op::CrashBeforeCommit),
        1 => Just(Op::CrashAfterCommit),
    ]
}

fn setup(limits_units: &[i64]) -> (MemoryStore, Vec<JobId>) {
    let mut store = MemoryStore::new();
    let mut ledger = Ledger::new(&mut store);
    ledger.open_system_accounts(0).unwrap();
    for (n, limit) in limits_units.iter().enumerate() {
        ledger.open_account(client_account(n), Some(Micros::from_units(*limit).unwrap()), 0).unwrap();
    }
    for n in 0..PROVIDERS {
        ledger.open_account(provider_account(n), Some(Micros::ZERO), 0).unwrap();
    }
    let jobs = (0..JOBS).map(JobId::from_index).collect();
    (store, jobs)
}

/// Deterministic job ids, so that failures reproduce.
trait FromIndex {
    fn from_index(n: usize) -> JobId;
}

impl FromIndex for JobId {
    fn from_index(n: usize) -> JobId {
        format!("00000000-0000-4000-8000-{n:012}").parse().unwrap()
    }
}

/// Run `request` in a transaction: commit on success, roll back on error.
fn apply(durable: &mut MemoryStore, request: TransferRequest, now_ms: u64) -> Result<(), TestCaseError> {
    let mut tx = durable.clone();
    match Ledger::new(&mut tx).execute(request, now_ms) {
        Ok(_) => *durable = tx,
        Err(LedgerError::OverLimit { .. }) => {}
        Err(other) => return Err(TestCaseError::fail(format!("unexpected error: {other}"))),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_with_retries_and_crashes_keeps_the_ledger_balanced_and_charges_work_once(
        limits in proptest::collection::vec(0i64..10, CLIENTS),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let (mut durable, jobs) = setup(&limits);
        let job_client = |job: usize| client_account(job % CLIENTS);
        // Requests in the order the process issued them, and by key.
        let mut sent: Vec<TransferRequest> = Vec::new();
        let mut sent_by_key: BTreeMap<IdempotencyKey, TransferRequest> = BTreeMap::new();
        let mut work_units = BTreeSet::new();
        let mut reserved_jobs = BTreeSet::new();
        let mut crash: Option<bool> = None;
        for (index, op) in ops.iter().enumerate() {
            let now_ms = 1_000 + index as u64;
            let key = |prefix: &str| IdempotencyKey::new(format!("{prefix}:{index}")).unwrap();
            let reservation_of = |store: &mut MemoryStore, job: usize| Ledger::new(store).job_reservation(jobs[job]).unwrap().map(|r| r.id);
            let post = |prefix: &str, debit: AccountId, credit: AccountId, amount: i64, over_limit, purpose| TransferRequest {
                key: key(prefix),
                action: Action::Post { debit, credit, amount: Micros::new(amount), over_limit },
                purpose,
                memo: Memo::default(),
            };
            let request = match op {
                Op::Deposit { client, amount } => {
                    post("deposit", AccountId::External, client_account(*client), *amount, OverLimit::Refuse, Purpose::Deposit)
                }
                Op::Reserve { job, amount, maximum } => {
                    if !reserved_jobs.insert(*job) {
                        continue;
                    }
                    let kind = if *maximum { ReservationKind::Maximum } else { ReservationKind::Estimate };
                    TransferRequest {
                        key: keys::job_reservation(jobs[*job]),
                        action: Action::Reserve { debit: job_client(*job), credit: AccountId::Platform, amount: Micros::new(*amount), kind },
                        purpose: Purpose::JobReservation,
                        memo: Memo { job: Some(jobs[*job]), ..Memo::default() },
                    }
                }
                Op::Work { job, amount } => {
                    work_units.insert(key("work"));
                    let action = match reservation_of(&mut durable, *job) {
                        Some(reservation) => Action::Settle { reservation, amount: Micros::new(*amount) },
                        None => Action::Post {
                            debit: job_client(*job),
                            credit: AccountId::Platform,
                            amount: Micros::new(*amount),
                            over_limit: OverLimit::Allow,
                        },
                    };
                    TransferRequest { key: key("work"), action, purpose: Purpose::Computation, memo: Memo { job: Some(jobs[*job]), ..Memo::default() } }
                }
                Op::Void { job } => {
                    let Some(reservation) = reservation_of(&mut durable, *job) else { continue };
                    TransferRequest { key: key("void"), action: Action::Void { reservation }, purpose: Purpose::JobReservation, memo: Memo::default() }
                }
                Op::Pay { provider, amount } => {
                    post("pay", AccountId::Platform, provider_account(*provider), *amount, OverLimit::Allow, Purpose::ProviderPay)
                }
                Op::Barter { provider, client, amount } => {
                    post("barter", provider_account(*provider), client_account(*client), *amount, OverLimit::Refuse, Purpose::BarterCredit)
                }
                Op::Payout { provider, amount } => {
                    post("payout", provider_account(*provider), AccountId::External, *amount, OverLimit::Refuse, Purpose::Payout)
                }
                Op::Retry { back } => {
                    if sent.is_empty() {
                        continue;
                    }
                    sent[sent.len() - 1 - back % sent.len()].clone()
                }
                Op::Tamper { back } => {
                    if sent.is_empty() {
                        continue;
                    }
                    let mut tampered = sent[sent.len() - 1 - back % sent.len()].clone();
                    match &mut tampered.action {
                        Action::Post { amount, .. } | Action::Reserve { amount, .. } | Action::Settle { amount, .. } => {
                            *amount = amount.checked_add(Micros::new(1)).unwrap();
                        }
                        Action::Void { .. } => tampered.purpose = Purpose::Adjustment,
                    }
                    let used = durable.transfers().iter().any(|t| t.key() == &tampered.key);
                    let mut tx = durable.clone();
                    let result = Ledger::new(&mut tx).execute(tampered, now_ms);
                    if used {
                        prop_assert!(matches!(result, Err(LedgerError::IdempotencyConflict { .. })), "{:?}", result);
                    }
                    // Never committed: the process that sent it was wrong.
                    continue;
                }
                Op::CrashBeforeCommit => {
                    crash = Some(false);
                    continue;
                }
                Op::CrashAfterCommit => {
                    crash = Some(true);
                    continue;
                }
            };
            if !matches!(op, Op::Retry { .. }) {
                sent.push(request.clone());
                sent_by_key.insert(request.key.clone(), request.clone());
            }
            match crash.take() {
                None => apply(&mut durable, request, now_ms)?,
                Some(committed) => {
                    if committed {
                        apply(&mut durable, request, now_ms)?;
                    }
                    // Restart: the process does not know what committed, so it sends everything
                    // again, each in its own transaction.
                    for request in &sent {
                        apply(&mut durable, request.clone(), now_ms)?;
                    }
                }
            }
            check_state(&mut durable, &sent_by_key)?;
        }
        // A last restart: every request has been delivered at least once after its crash.
        for request in &sent {
            apply(&mut durable, request.clone(), 10_000)?;
        }
        check_state(&mut durable, &sent_by_key)?;
        // Work is never refused (it is done): each unit is in the log exactly once.
        let charged: Vec<&Transfer> = durable.transfers().iter().filter(|t| t.key().as_str().starts_with("work:")).collect();
        prop_assert_eq!(charged.len(), work_units.len());
        // And the money charged for work is the sum of what each unit posted, capped by maximums.
        for job in &jobs {
            let mut store = durable.clone();
            if let Some(reservation) = Ledger::new(&mut store).job_reservation(*job).unwrap() {
                let through: Micros = Micros::checked_sum(
                    charged.iter().filter(|t| matches!(t.request.action, Action::Settle { reservation: r, .. } if r == reservation.id)).map(|t| t.posted),
                ).unwrap();
                prop_assert_eq!(through, reservation.settled().unwrap());
            }
        }
    }
}

// ---- billing a journal bit by bit, with crashes, against billing it in one go

const MINUTE_MS: u64 = 60_000;
const INCREMENT_MS: u64 = 15 * MINUTE_MS;
const T0: u64 = 1_704_067_200_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;

#[derive(Debug, Clone)]
struct Scenario {
    records: Vec<WorkRecord>,
    terms: Vec<JobTerms>,
    /// Per job: a reservation amount (micros) and whether it is a maximum.
    reservations: Vec<Option<(i64, bool)>>,
    /// Times at which billing runs, increasing.
    billing_times: Vec<u64>,
    /// Per billing run: a crash after this many lines, committed or not.
    crashes: Vec<Option<(usize, bool)>>,
    end_ms: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let job_count = 1usize..4;
    job_count
        .prop_flat_map(|jobs| {
            let record = (
                0..jobs,
                0u64..3,
                prop_oneof![Just(1.0f64), Just(10.0), Just(25.5), 0.0f64..100.0],
                0.0f64..0.99,
                0u64..8 * INCREMENT_MS,
                prop::option::of(0u64..3 * HOUR_MS),
                prop::option::of(0u64..3 * HOUR_MS),
                any::<bool>(),
                0u64..3_000_000_000,
                0u64..3_000_000_000,
            );
            let terms =
                proptest::collection::vec((prop::option::of(1.0f64..50.0), prop::option::of(0.9f64..0.999)), jobs);
            let reservations = proptest::collection::vec(prop::option::of((1i64..20_000_000, any::<bool>())), jobs);
            (
                proptest::collection::vec(record, 0..10),
                terms,
                reservations,
                proptest::collection::vec(0u64..2 * HOUR_MS, 1..8),
                proptest::collection::vec(prop::option::of((0usize..12, any::<bool>())), 8),
                Just(jobs),
            )
        })
        .prop_map(|(raw_records, raw_terms, reservations, gaps, crashes, jobs)| {
            let job_ids: Vec<JobId> = (0..jobs).map(JobId::from_index).collect();
            let clients = [party(1), party(2)];
            let terms: Vec<JobTerms> = raw_terms
                .into_iter()
                .enumerate()
                .map(|(n, (node_power, reliability))| JobTerms {
                    node_power_gflops: node_power,
                    reliability,
                    ..JobTerms::new(job_ids[n], clients[n % 2].clone())
                })
                .collect();
            let mut final_tasks = BTreeSet::new();
            let records: Vec<WorkRecord> = raw_records
                .into_iter()
                .enumerate()
                .map(
                    |(
                        id,
                        (
                            job,
                            task,
                            power,
                            availability,
                            launch,
                            cancel_after,
                            conclude_after,
                            final_status,
                            data_in,
                            data_out,
                        ),
                    )| {
                        let launched_ms = T0 + launch;
                        let cancelled_ms = cancel_after.map(|d| launched_ms + d);
                        let concluded_ms = conclude_after.map(|d| launched_ms + d);
                        // At most one placement of a task returns its final status.
                        let final_status = final_status && concluded_ms.is_some() && final_tasks.insert((job, task));
                        WorkRecord {
                            id: id as u64 + 1,
                            client: clients[job % 2].clone(),
                            job: job_ids[job],
                            task,
                            provider: party(100 + (id % 3) as u8),
                            engine: party(100 + (id % 3) as u8),
                            power_gflops: power,
                            availability,
                            launched_ms,
                            cancelled_ms,
                            concluded_ms,
                            final_status,
                            data_in_bytes: data_in,
                            data_out_bytes: data_out,
                            pay_awaits_judgement: false,
                            pay_withheld: false,
                        }
                    },
                )
                .collect();
            let mut billing_times = Vec::new();
            let mut time = T0;
            for gap in gaps {
                time += gap;
                billing_times.push(time);
            }
            // Everything is concluded for pay by then: conclusions and cancellations + L.
            let end_ms = (T0 + 8 * INCREMENT_MS + 3 * HOUR_MS + HOUR_MS).max(time);
            let end_ms = end_ms - end_ms % INCREMENT_MS + INCREMENT_MS;
            Scenario { records, terms, reservations, billing_times, crashes, end_ms }
        })
}

/// The journal as the server knows it at `now_ms`: only what has happened by then.
fn journal_at(records: &[WorkRecord], now_ms: u64) -> Vec<WorkRecord> {
    records
        .iter()
        .filter(|r| r.launched_ms <= now_ms)
        .map(|r| {
            let mut r = r.clone();
            r.cancelled_ms = r.cancelled_ms.filter(|t| *t <= now_ms);
            r.concluded_ms = r.concluded_ms.filter(|t| *t <= now_ms);
            r.final_status = r.final_status && r.concluded_ms.is_some();
            r
        })
        .collect()
}

fn billing_store(scenario: &Scenario) -> MemoryStore {
    let mut store = MemoryStore::new();
    let mut ledger = Ledger::new(&mut store);
    ledger.open_system_accounts(0).unwrap();
    for client in [party(1), party(2)] {
        ledger.open_account(AccountId::Party(client), Some(Micros::from_units(1_000).unwrap()), 0).unwrap();
    }
    for n in 100..103 {
        ledger.open_account(AccountId::Party(party(n)), Some(Micros::ZERO), 0).unwrap();
    }
    for (terms, reservation) in scenario.terms.iter().zip(&scenario.reservations) {
        if let Some((amount, maximum)) = reservation {
            let kind = if *maximum { ReservationKind::Maximum } else { ReservationKind::Estimate };
            // May be refused by the limit: then the job simply has no reservation.
            let _ = ledger.reserve_job(terms.job, terms.payer.clone(), Micros::new(*amount), kind, T0);
        }
    }
    store
}

/// Every account's four balances, and every transfer by key with what it posted.
fn outcome(store: &MemoryStore) -> (Vec<Account>, BTreeMap<String, (i64, i64)>) {
    let accounts = store.accounts_ref().cloned().collect();
    let transfers = store
        .transfers()
        .iter()
        .map(|t| (t.key().to_string(), (t.posted.as_i64() + t.capped.as_i64(), t.reserved.as_i64())))
        .collect();
    (accounts, transfers)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn billing_bit_by_bit_with_crashes_charges_what_billing_in_one_go_charges(scenario in scenario()) {
        let config = PricingConfig::default();

        let mut reference = billing_store(&scenario);
        let whole = BillingWindow { from_ms: T0 - T0 % INCREMENT_MS, to_ms: scenario.end_ms };
        let plan = plan_billing(&config, &scenario.records, &scenario.terms, whole, scenario.end_ms).unwrap();
        Ledger::new(&mut reference).apply_billing(&plan, scenario.end_ms).unwrap();
        check_balanced(&mut reference).unwrap();

        let mut durable = billing_store(&scenario);
        let mut watermark = T0;
        let mut times = scenario.billing_times.clone();
        times.push(scenario.end_ms);
        // Records the store marked billed and no longer passes.
        let mut billed = BTreeSet::new();
        for (run, now_ms) in times.iter().enumerate() {
            let journal: Vec<WorkRecord> =
                journal_at(&scenario.records, *now_ms).into_iter().filter(|r| !billed.contains(&r.id)).collect();
            let window = BillingWindow::closed_until(watermark, *now_ms, &config);
            let plan = plan_billing(&config, &journal, &scenario.terms, window, *now_ms).unwrap();
            if let Some(Some((after_lines, committed))) = scenario.crashes.get(run) {
                // The process dies part way: what it did is kept or lost, and it bills again.
                let partial = BillingPlan { lines: plan.lines.iter().take(*after_lines).cloned().collect(), ..plan.clone() };
                let mut tx = durable.clone();
                Ledger::new(&mut tx).apply_billing(&partial, *now_ms).unwrap();
                if *committed {
                    durable = tx;
                }
                check_balanced(&mut durable).unwrap();
            }
            let mut tx = durable.clone();
            let report = Ledger::new(&mut tx).apply_billing(&plan, *now_ms).unwrap();
            prop_assert!(report.conflicts.is_empty(), "a closed increment changed: {:?}", report.conflicts);
            durable = tx;
            watermark = window.to_ms;
            billed.extend(journal.iter().filter(|r| r.is_fully_billed(window.to_ms)).map(|r| r.id));
            check_balanced(&mut durable).unwrap();
        }
        // Billing everything again changes nothing.
        let plan = plan_billing(&config, &scenario.records, &scenario.terms, whole, scenario.end_ms).unwrap();
        let report = Ledger::new(&mut durable).apply_billing(&plan, scenario.end_ms).unwrap();
        prop_assert_eq!((report.transfers_new, report.conflicts.len()), (0, 0));

        let (accounts, transfers) = outcome(&durable);
        let (expected_accounts, expected_transfers) = outcome(&reference);
        prop_assert_eq!(transfers, expected_transfers);
        // Balances match exactly (with a maximum cost, which line gets capped may differ, the
        // totals do not).
        for (actual, expected) in accounts.iter().zip(&expected_accounts) {
            prop_assert_eq!(actual, expected);
        }
    }

    #[test]
    fn a_split_always_adds_up(total in 0i64..1_000_000_000_000, weights in proptest::collection::vec(0.0f64..1e12, 1..20)) {
        let parts = split_proportionally(Micros::new(total), &weights);
        prop_assert_eq!(parts.len(), weights.len());
        prop_assert_eq!(Micros::checked_sum(parts.iter().copied()).unwrap(), Micros::new(total));
        prop_assert!(parts.iter().all(|p| !p.is_negative()));
    }

    #[test]
    fn amounts_format_and_parse_back(value in any::<i64>()) {
        let micros = Micros::new(value);
        prop_assert_eq!(micros.to_string().parse::<Micros>().unwrap(), micros);
    }

    #[test]
    fn formulas_never_panic(x in any::<f64>(), y in any::<f64>(), z in any::<f64>()) {
        let config = PricingConfig::default();
        let _ = config.computation_price_per_hour(x);
        let _ = config.data_transfer_charge_with(x, y, z, x);
        let _ = config.reliability_premium_per_hour(x, y, z);
        let _ = config.provider_pay_per_hour(x, y);
        let _ = config.provider_pay_per_gflop_hour(z);
        let _ = config.provider_pay(x, y, 1_000);
        let _ = Micros::from_f64_units(x, "x");
    }
}
