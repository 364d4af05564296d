//! Billing from the journal, with worked examples computed by hand from the seed's formulas
//! (default constants: a = 4.5, b = 0.296, c = 1.155, 15-minute increments, k = 0.25, R = 0.9,
//! average pi = 0.8, g = 0.05, L = 1 hour).

use idlegrid_ledger::*;
use idlegrid_types::{JobId, PartyId};

const MINUTE_MS: u64 = 60_000;
const INCREMENT_MS: u64 = 15 * MINUTE_MS;
/// 2024-01-01T00:00:00Z: an increment boundary.
const T0: u64 = 1_704_067_200_000;

fn party(n: u8) -> PartyId {
    PartyId::from_public_key(&[n; 32])
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::new(text).unwrap()
}

fn units(n: i64) -> Micros {
    Micros::from_units(n).unwrap()
}

fn record(
    id: u64,
    client: &PartyId,
    job: JobId,
    task: u64,
    power_gflops: f64,
    launched_ms: u64,
    concluded_ms: Option<u64>,
) -> WorkRecord {
    WorkRecord {
        id,
        client: client.clone(),
        job,
        task,
        provider: party(100 + (id % 50) as u8),
        engine: party(100 + (id % 50) as u8),
        power_gflops,
        availability: 0.9,
        launched_ms,
        cancelled_ms: None,
        concluded_ms,
        final_status: false,
        data_in_bytes: 0,
        data_out_bytes: 0,
        pay_awaits_judgement: false,
        pay_withheld: false,
    }
}

fn amounts(plan: &BillingPlan, purpose: Purpose) -> Vec<Micros> {
    plan.lines.iter().filter(|l| l.purpose == purpose).map(|l| l.amount).collect()
}

/// A store with the system accounts, the given clients (limit 1000 below zero) and the
/// providers 100..150 (limit zero).
fn store_with(clients: &[&PartyId]) -> MemoryStore {
    let mut store = MemoryStore::new();
    let mut ledger = Ledger::new(&mut store);
    ledger.open_system_accounts(0).unwrap();
    for client in clients {
        ledger.open_account(AccountId::Party((*client).clone()), Some(units(1000)), 0).unwrap();
    }
    for n in 100..150 {
        ledger.open_account(AccountId::Party(party(n)), Some(Micros::ZERO), 0).unwrap();
    }
    store
}

fn window(increments: u64) -> BillingWindow {
    BillingWindow { from_ms: T0, to_ms: T0 + increments * INCREMENT_MS }
}

#[test]
fn one_task_for_one_increment() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let mut work = record(1, &client, job, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    work.final_status = true;
    work.data_in_bytes = 1_000_000_000;
    let plan =
        plan_billing(&config, &[work], &[JobTerms::new(job, client.clone())], window(1), T0 + INCREMENT_MS).unwrap();
    // P = 10 for the whole increment: 10^1.155 = 14.288941, 4.5 + 0.296 * 14.288941 = 8.729526
    // per hour, a quarter of it: 2.1823815 -> 2.182382.
    assert_eq!(amounts(&plan, Purpose::Computation), vec![Micros::new(2_182_382)]);
    // At the baseline reliability: no premium line.
    assert!(amounts(&plan, Purpose::ReliabilityPremium).is_empty());
    // 1 GB in, r = R = 0.9, pi = 0.8: ln(0.1)/ln(0.2) = 1.430677 engine legs + 1 client leg,
    // 0.05 * 1 * 2.430677 = 0.1215338 -> 0.121534.
    assert_eq!(amounts(&plan, Purpose::DataTransfer), vec![Micros::new(121_534)]);
    // Simplified pay, availability 0.9 = R: k C = 0.25 * 10 = 2.5 per hour for 15 minutes.
    assert_eq!(amounts(&plan, Purpose::ProviderPay), vec![Micros::new(625_000)]);
    assert_eq!(plan.records_open, 0);
    assert_eq!(plan.last_increment_charge[&job], Micros::new(2_182_382));
}

#[test]
fn a_task_across_two_increments_is_charged_at_its_mean_power_in_each() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    // 10 GFLOPS from 7.5 to 22.5 minutes: half of each increment, so P = 5 in both.
    let work = record(1, &client, job, 0, 10.0, T0 + 7 * MINUTE_MS + 30_000, Some(T0 + 22 * MINUTE_MS + 30_000));
    let plan = plan_billing(&config, &[work], &[JobTerms::new(job, client)], window(2), T0 + 2 * INCREMENT_MS).unwrap();
    // 5^1.155 = 6.416680, 4.5 + 0.296 * 6.416680 = 6.399337 per hour, /4 = 1.599834 per increment:
    // the flat part is charged in full for a portion of an increment.
    assert_eq!(amounts(&plan, Purpose::Computation), vec![Micros::new(1_599_834); 2]);
    let keys: Vec<String> =
        plan.lines.iter().filter(|l| l.purpose == Purpose::Computation).map(|l| l.key.to_string()).collect();
    assert_eq!(keys, vec![format!("compute:{job}:{T0}"), format!("compute:{job}:{}", T0 + INCREMENT_MS)]);
}

#[test]
fn redundant_copies_count_once_at_the_highest_power_running() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    // Copy A: 10 GFLOPS for the whole increment. Copy B: 20 GFLOPS from minute 5.
    let a = record(1, &client, job, 7, 10.0, T0, Some(T0 + INCREMENT_MS));
    let b = record(2, &client, job, 7, 20.0, T0 + 5 * MINUTE_MS, Some(T0 + INCREMENT_MS));
    let plan = plan_billing(&config, &[a, b], &[JobTerms::new(job, client)], window(1), T0 + INCREMENT_MS).unwrap();
    // P = (10 * 5 + 20 * 10) / 15 = 16.666667 (not 10 + 20 * 2/3 = 23.3): 16.666667^1.155 =
    // 25.777174, 4.5 + 0.296 * 25.777174 = 12.130044 per hour, /4 = 3.032511.
    assert_eq!(amounts(&plan, Purpose::Computation), vec![Micros::new(3_032_511)]);
    // Both engines are paid for their own time.
    assert_eq!(amounts(&plan, Purpose::ProviderPay), vec![Micros::new(625_000), Micros::new(833_333)]);
}

#[test]
fn a_requested_node_power_is_billed_instead_of_the_engines_rating() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let work = record(1, &client, job, 0, 55.0, T0, Some(T0 + INCREMENT_MS));
    let terms = JobTerms { node_power_gflops: Some(10.0), ..JobTerms::new(job, client) };
    let plan = plan_billing(&config, &[work], &[terms], window(1), T0 + INCREMENT_MS).unwrap();
    assert_eq!(amounts(&plan, Purpose::Computation), vec![Micros::new(2_182_382)]);
}

#[test]
fn jobs_of_one_client_share_one_price_split_by_their_work() {
    let config = PricingConfig::default();
    let client = party(1);
    let (job_a, job_b) = (JobId::random(), JobId::random());
    let a = record(1, &client, job_a, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    let b = record(2, &client, job_b, 0, 30.0, T0, Some(T0 + INCREMENT_MS));
    let terms = [JobTerms::new(job_a, client.clone()), JobTerms::new(job_b, client.clone())];
    let plan = plan_billing(&config, &[a, b], &terms, window(1), T0 + INCREMENT_MS).unwrap();
    // P = 40: 40^1.155 = 70.856434, 4.5 + 0.296 * 70.856434 = 25.473504 per hour, /4 = 6.368376,
    // split 1:3 -> 1.592094 and 4.776282, which add up exactly.
    let mut charges: Vec<(JobId, Micros)> = plan
        .lines
        .iter()
        .filter(|l| l.purpose == Purpose::Computation)
        .map(|l| (l.memo.job.unwrap(), l.amount))
        .collect();
    charges.sort();
    let mut expected = vec![(job_a, Micros::new(1_592_094)), (job_b, Micros::new(4_776_282))];
    expected.sort();
    assert_eq!(charges, expected);

    // Another client in the same increment has its own cluster and its own price.
    let other = party(2);
    let job_c = JobId::random();
    let c = record(3, &other, job_c, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    let terms = [terms[0].clone(), JobTerms::new(job_c, other)];
    let a = record(1, &client, job_a, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    let plan = plan_billing(&config, &[a, c], &terms, window(1), T0 + INCREMENT_MS).unwrap();
    assert_eq!(amounts(&plan, Purpose::Computation), vec![Micros::new(2_182_382); 2]);
}

#[test]
fn reliability_above_the_baseline_pays_the_premium() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let work = record(1, &client, job, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    let terms = JobTerms { reliability: Some(0.99), ..JobTerms::new(job, client.clone()) };
    let plan = plan_billing(&config, std::slice::from_ref(&work), &[terms], window(1), T0 + INCREMENT_MS).unwrap();
    // k C N (ln(1-r)/ln(1-R) - 1) = 0.25 * 10 * 1 * (2 - 1) = 2.5 per hour, 0.625 per increment.
    assert_eq!(amounts(&plan, Purpose::ReliabilityPremium), vec![Micros::new(625_000)]);
    assert_eq!(plan.last_increment_charge[&job], Micros::new(2_182_382 + 625_000));

    let below = JobTerms { reliability: Some(0.5), ..JobTerms::new(job, client) };
    let error = plan_billing(&config, &[work], &[below], window(1), T0 + INCREMENT_MS).unwrap_err();
    assert!(error.to_string().contains("below the baseline"), "{error}");
}

#[test]
fn a_cancelled_copy_costs_the_client_until_cancellation_and_pays_the_provider_until_conclusion() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let mut loser = record(1, &client, job, 0, 10.0, T0, None);
    loser.cancelled_ms = Some(T0 + INCREMENT_MS);
    let terms = [JobTerms::new(job, client)];
    // Two increments later the engine has not acknowledged the removal: still open for pay.
    let plan = plan_billing(&config, std::slice::from_ref(&loser), &terms, window(2), T0 + 2 * INCREMENT_MS).unwrap();
    assert_eq!(amounts(&plan, Purpose::Computation), vec![Micros::new(2_182_382)], "only until cancellation");
    assert!(amounts(&plan, Purpose::ProviderPay).is_empty());
    assert_eq!(plan.records_open, 1);
    // L = 1 hour after cancellation it is concluded anyway: paid 75 minutes at 2.5 per hour.
    let later = BillingWindow { from_ms: T0 + 2 * INCREMENT_MS, to_ms: T0 + 5 * INCREMENT_MS };
    let plan = plan_billing(&config, std::slice::from_ref(&loser), &terms, later, T0 + 5 * INCREMENT_MS).unwrap();
    assert_eq!(amounts(&plan, Purpose::ProviderPay), vec![Micros::new(3_125_000)]);
    assert!(amounts(&plan, Purpose::Computation).is_empty());
    // The engine acknowledged after 20 minutes: paid 35 minutes.
    loser.concluded_ms = Some(T0 + 35 * MINUTE_MS);
    let plan = plan_billing(&config, std::slice::from_ref(&loser), &terms, later, T0 + 5 * INCREMENT_MS).unwrap();
    assert_eq!(amounts(&plan, Purpose::ProviderPay), vec![Micros::new(1_458_333)]);
    assert!(!loser.is_fully_billed(T0 + 2 * INCREMENT_MS));
    assert!(loser.is_fully_billed(T0 + 3 * INCREMENT_MS));
    let mut unacknowledged = loser.clone();
    unacknowledged.concluded_ms = None;
    assert!(!unacknowledged.is_fully_billed(T0 + 10 * INCREMENT_MS), "paid, but a final status may still come");
    let running = record(9, &party(1), job, 1, 10.0, T0, None);
    assert!(!running.is_fully_billed(T0 + 100 * INCREMENT_MS));
    // The full model pays until the cancellation (the virtual node's first result): 15 minutes
    // of 10 GFLOPS = 2.5 GFLOP-hours at T ln(1-0.9)/ln(1-0.9) = 0.25.
    let full = PricingConfig { provider_pay_model: ProviderPayModel::Full, ..PricingConfig::default() };
    let plan = plan_billing(&full, &[loser], &terms, later, T0 + 5 * INCREMENT_MS).unwrap();
    assert_eq!(amounts(&plan, Purpose::ProviderPay), vec![Micros::new(625_000)]);
}

#[test]
fn billing_the_same_work_twice_charges_once() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let mut work = record(1, &client, job, 0, 10.0, T0, Some(T0 + 20 * MINUTE_MS));
    work.final_status = true;
    work.data_out_bytes = 3_000_000_000;
    let terms = [JobTerms::new(job, client.clone())];
    let mut store = store_with(&[&client]);
    let mut ledger = Ledger::new(&mut store);
    let plan = plan_billing(&config, std::slice::from_ref(&work), &terms, window(2), T0 + 2 * INCREMENT_MS).unwrap();
    let first = ledger.apply_billing(&plan, T0 + 2 * INCREMENT_MS).unwrap();
    assert_eq!((first.transfers_new, first.transfers_repeated), (4, 0));
    let (charges, pay) = plan.totals().unwrap();
    assert_eq!((first.charged, first.paid), (charges, pay));
    let balance = ledger.account(&AccountId::Party(client.clone())).unwrap().balance_posted().unwrap();
    assert_eq!(balance, charges.checked_neg().unwrap());
    // Again, and with an overlapping later window that sees the same record.
    let again = ledger.apply_billing(&plan, T0 + 3 * INCREMENT_MS).unwrap();
    assert_eq!((again.transfers_new, again.transfers_repeated, again.charged), (0, 4, Micros::ZERO));
    let overlapping = BillingWindow { from_ms: T0 + INCREMENT_MS, to_ms: T0 + 3 * INCREMENT_MS };
    let plan = plan_billing(&config, &[work], &terms, overlapping, T0 + 3 * INCREMENT_MS).unwrap();
    let third = ledger.apply_billing(&plan, T0 + 3 * INCREMENT_MS).unwrap();
    assert_eq!(third.transfers_new, 0);
    assert_eq!(ledger.account(&AccountId::Party(client)).unwrap().balance_posted().unwrap(), balance);
    ledger.check_balanced().unwrap();
}

#[test]
fn a_price_change_does_not_recharge_billed_work_and_is_reported() {
    let client = party(1);
    let job = JobId::random();
    let work = record(1, &client, job, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    let terms = [JobTerms::new(job, client.clone())];
    let mut store = store_with(&[&client]);
    let mut ledger = Ledger::new(&mut store);
    let plan =
        plan_billing(&PricingConfig::default(), std::slice::from_ref(&work), &terms, window(1), T0 + INCREMENT_MS)
            .unwrap();
    ledger.apply_billing(&plan, T0 + INCREMENT_MS).unwrap();
    let dearer = PricingConfig { computation_base_per_hour: 9.0, ..PricingConfig::default() };
    let plan = plan_billing(&dearer, &[work], &terms, window(1), T0 + INCREMENT_MS).unwrap();
    let report = ledger.apply_billing(&plan, T0 + INCREMENT_MS).unwrap();
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].key, keys::computation(job, T0));
    assert_eq!(report.charged, Micros::ZERO);
    ledger.check_balanced().unwrap();
}

#[test]
fn a_job_never_spends_past_its_maximum_cost_and_is_stopped_before() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let terms = [JobTerms::new(job, client.clone())];
    let mut store = store_with(&[&client]);
    let mut ledger = Ledger::new(&mut store);
    // 2.182382 per increment at 10 GFLOPS; a maximum of 5 covers two increments and part of a third.
    ledger.reserve_job(job, AccountId::Party(client.clone()), units(5), ReservationKind::Maximum, T0).unwrap();
    let running = record(1, &client, job, 0, 10.0, T0, None);

    let plan = plan_billing(&config, std::slice::from_ref(&running), &terms, window(1), T0 + INCREMENT_MS).unwrap();
    let report = ledger.apply_billing(&plan, T0 + INCREMENT_MS).unwrap();
    assert!(report.jobs_to_stop.is_empty(), "2.817618 left, more than the next increment's 2.182382");

    let second = BillingWindow { from_ms: T0 + INCREMENT_MS, to_ms: T0 + 2 * INCREMENT_MS };
    let plan = plan_billing(&config, std::slice::from_ref(&running), &terms, second, T0 + 2 * INCREMENT_MS).unwrap();
    let report = ledger.apply_billing(&plan, T0 + 2 * INCREMENT_MS).unwrap();
    assert_eq!(
        report.jobs_to_stop,
        vec![JobStop {
            job,
            reason: StopReason::CostMaxNear {
                headroom: Micros::new(635_236),
                next_increment_estimate: Micros::new(2_182_382)
            }
        }]
    );

    // The server was late: the job ran on. Charges stop at the maximum; the provider is still paid.
    let mut concluded = running;
    concluded.concluded_ms = Some(T0 + 4 * INCREMENT_MS);
    let rest = BillingWindow { from_ms: T0 + 2 * INCREMENT_MS, to_ms: T0 + 4 * INCREMENT_MS };
    let plan = plan_billing(&config, &[concluded], &terms, rest, T0 + 4 * INCREMENT_MS).unwrap();
    let report = ledger.apply_billing(&plan, T0 + 4 * INCREMENT_MS).unwrap();
    let capped = Micros::new(2 * 2_182_382 - 635_236);
    assert_eq!(report.jobs_to_stop, vec![JobStop { job, reason: StopReason::CostMaxReached { capped } }]);
    assert_eq!(report.capped[&job], capped);
    assert_eq!(report.paid, Micros::new(2_500_000), "an hour at 2.5 per hour");
    let account = ledger.account(&AccountId::Party(client)).unwrap();
    assert_eq!(account.balance_posted().unwrap(), units(-5), "exactly the maximum");
    assert_eq!(account.debits_pending, Micros::ZERO);
    ledger.release_job(job, T0 + 4 * INCREMENT_MS).unwrap();
    ledger.check_balanced().unwrap();
}

#[test]
fn a_client_over_its_limit_is_reported_and_back_in_good_standing_after_paying() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let mut store = store_with(&[&client]);
    let mut ledger = Ledger::new(&mut store);
    let account = AccountId::Party(client.clone());
    ledger.set_overdraft_max(&account, Some(units(3))).unwrap();
    let running = record(1, &client, job, 0, 10.0, T0, None);
    let terms = [JobTerms::new(job, client.clone())];
    let plan = plan_billing(&config, std::slice::from_ref(&running), &terms, window(1), T0 + INCREMENT_MS).unwrap();
    assert!(ledger.apply_billing(&plan, T0 + INCREMENT_MS).unwrap().accounts_over_limit.is_empty());
    let plan = plan_billing(&config, &[running], &terms, window(2), T0 + 2 * INCREMENT_MS).unwrap();
    let report = ledger.apply_billing(&plan, T0 + 2 * INCREMENT_MS).unwrap();
    // Work done is charged even past the limit: -4.364764 with a limit of 3.
    assert_eq!(
        report.accounts_over_limit,
        vec![AccountStanding { account: account.clone(), available: Micros::new(-4_364_764), overdraft_max: units(3) }]
    );
    ledger.deposit(key("deposit:card:1"), account.clone(), units(2), T0 + 2 * INCREMENT_MS).unwrap();
    assert!(!ledger.account(&account).unwrap().is_over_limit().unwrap());
    ledger.check_balanced().unwrap();
}

#[test]
fn a_provider_pays_for_its_own_jobs_with_its_engines_earnings() {
    let config = PricingConfig::default();
    let owner_provider = party(100);
    let owner_client = party(7);
    let job = JobId::random();
    let mut store = store_with(&[&owner_client]);
    let mut ledger = Ledger::new(&mut store);
    // The provider's engine worked for somebody else: 4 hours at 2.5 per hour = 10.
    let stranger = party(8);
    ledger.open_account(AccountId::Party(stranger.clone()), Some(units(1000)), 0).unwrap();
    let other_job = JobId::random();
    let mut earning = record(100, &stranger, other_job, 0, 10.0, T0, Some(T0 + 16 * INCREMENT_MS));
    earning.provider = owner_provider.clone();
    let plan =
        plan_billing(&config, &[earning], &[JobTerms::new(other_job, stranger)], window(16), T0 + 16 * INCREMENT_MS)
            .unwrap();
    ledger.apply_billing(&plan, T0 + 16 * INCREMENT_MS).unwrap();
    let provider_account = AccountId::Party(owner_provider.clone());
    assert_eq!(ledger.account(&provider_account).unwrap().balance_posted().unwrap(), units(10));

    // Its owner's job is paid from that account: reserved against the earnings, limit zero.
    let terms = JobTerms { payer: provider_account.clone(), ..JobTerms::new(job, owner_client.clone()) };
    let too_much = ledger.reserve_job(job, provider_account.clone(), units(11), ReservationKind::Maximum, T0);
    assert!(matches!(too_much, Err(LedgerError::OverLimit { .. })), "only what was earned");
    ledger.reserve_job(job, provider_account.clone(), units(10), ReservationKind::Maximum, T0).unwrap();
    let own = record(1, &owner_client, job, 0, 10.0, T0 + 16 * INCREMENT_MS, Some(T0 + 17 * INCREMENT_MS));
    let later = BillingWindow { from_ms: T0 + 16 * INCREMENT_MS, to_ms: T0 + 17 * INCREMENT_MS };
    let plan = plan_billing(&config, &[own], &[terms], later, T0 + 17 * INCREMENT_MS).unwrap();
    ledger.apply_billing(&plan, T0 + 17 * INCREMENT_MS).unwrap();
    ledger.release_job(job, T0 + 17 * INCREMENT_MS).unwrap();
    let account = ledger.account(&provider_account).unwrap();
    // 10 earned - 2.182382 spent (record 1 ran on another provider's engine, 101).
    assert_eq!(account.balance_posted().unwrap(), Micros::new(10_000_000 - 2_182_382));
    assert_eq!(ledger.account(&AccountId::Party(owner_client)).unwrap().balance_posted().unwrap(), Micros::ZERO);
    // Or explicitly: move earned credit to the client account.
    let moved =
        ledger.barter_credit(key("barter:1"), &owner_provider, &party(7), units(7), T0 + 17 * INCREMENT_MS).unwrap();
    assert_eq!(moved.transfer.purpose(), Purpose::BarterCredit);
    ledger.check_balanced().unwrap();
}

#[test]
fn statements_group_charges_by_job_and_earnings_by_engine() {
    let config = PricingConfig::default();
    let client = party(1);
    let (job_a, job_b) = (JobId::random(), JobId::random());
    let mut store = store_with(&[&client]);
    let mut ledger = Ledger::new(&mut store);
    let account = AccountId::Party(client.clone());
    ledger.deposit(key("deposit:1"), account.clone(), units(20), T0).unwrap();
    let a = record(1, &client, job_a, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    let b = record(2, &client, job_b, 0, 30.0, T0, Some(T0 + INCREMENT_MS));
    let terms = [JobTerms::new(job_a, client.clone()), JobTerms::new(job_b, client.clone())];
    let plan = plan_billing(&config, &[a, b], &terms, window(1), T0 + INCREMENT_MS).unwrap();
    ledger.apply_billing(&plan, T0 + INCREMENT_MS).unwrap();
    let day = Period { start_ms: T0, end_ms: T0 + 86_400_000 };
    let transfers = ledger.store().transfers_of_account(&account, day.start_ms, day.end_ms).unwrap();
    let statement = client_statement(&account, &transfers, day, StatementPeriod::Day).unwrap();
    assert_eq!(statement.rows.len(), 3, "{statement:?}");
    assert_eq!(statement.credits, units(20));
    assert_eq!(statement.debits, Micros::new(6_368_376));
    assert_eq!(statement.net().unwrap(), Micros::new(20_000_000 - 6_368_376));
    let csv = statement_csv(&statement);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "period_start,period_end,job,purpose,transfers,amount");
    assert_eq!(lines[1], "2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,,deposit,1,20.000000");
    let mut charged: Vec<&str> = lines[2..].to_vec();
    charged.sort();
    let mut expected = vec![
        format!("2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,{job_a},computation,1,-1.592094"),
        format!("2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,{job_b},computation,1,-4.776282"),
    ];
    expected.sort();
    assert_eq!(charged, expected);

    let provider = AccountId::Party(party(101));
    let transfers = ledger.store().transfers_of_account(&provider, day.start_ms, day.end_ms).unwrap();
    let statement = provider_statement(&provider, &transfers, day, StatementPeriod::Month).unwrap();
    let csv = statement_csv(&statement);
    // The month is clipped to the statement's span.
    assert_eq!(
        csv,
        format!(
            "period_start,period_end,engine,purpose,transfers,amount\n\
             2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,{},provider_pay,1,0.625000\n",
            party(101)
        )
    );
    // Reservations and voids post nothing: they do not appear.
    let job_c = JobId::random();
    ledger.reserve_job(job_c, account.clone(), units(1), ReservationKind::Estimate, T0 + 1).unwrap();
    ledger.release_job(job_c, T0 + 2).unwrap();
    let transfers = ledger.store().transfers_of_account(&account, day.start_ms, day.end_ms).unwrap();
    assert_eq!(client_statement(&account, &transfers, day, StatementPeriod::Whole).unwrap().rows.len(), 3);
}

#[test]
fn bad_windows_and_records_are_errors() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let terms = [JobTerms::new(job, client.clone())];
    let good = record(1, &client, job, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    let unaligned = BillingWindow { from_ms: T0 + 1, to_ms: T0 + INCREMENT_MS };
    assert!(matches!(
        plan_billing(&config, &[], &terms, unaligned, T0 + INCREMENT_MS),
        Err(LedgerError::InvalidWindow { .. })
    ));
    let error = plan_billing(&config, &[], &terms, window(2), T0 + INCREMENT_MS).unwrap_err();
    assert!(error.to_string().contains("billed only once it is over"), "{error}");
    assert_eq!(BillingWindow::closed_until(T0, T0 + INCREMENT_MS + 5, &config), window(1));

    let mut bad = good.clone();
    bad.power_gflops = f64::NAN;
    assert!(matches!(
        plan_billing(&config, &[bad], &terms, window(1), T0 + INCREMENT_MS),
        Err(LedgerError::InvalidRecord { record: 1, .. })
    ));
    let mut bad = good.clone();
    bad.availability = 1.0;
    assert!(plan_billing(&config, &[bad], &terms, window(1), T0 + INCREMENT_MS).is_err());
    let mut bad = good.clone();
    bad.concluded_ms = Some(T0 - 1);
    let error = plan_billing(&config, &[bad], &terms, window(1), T0 + INCREMENT_MS).unwrap_err();
    assert!(error.to_string().contains("before launched_ms"), "{error}");
    let mut bad = good.clone();
    bad.client = party(2);
    assert!(plan_billing(&config, &[bad], &terms, window(1), T0 + INCREMENT_MS).is_err());
    let error = plan_billing(&config, &[good.clone(), good.clone()], &terms, window(1), T0 + INCREMENT_MS).unwrap_err();
    assert!(error.to_string().contains("appears twice"), "{error}");
    let error = plan_billing(&config, &[good], &[], window(1), T0 + INCREMENT_MS).unwrap_err();
    assert!(matches!(error, LedgerError::MissingJobTerms { record: 1, .. }), "{error}");
    let twice = [terms[0].clone(), terms[0].clone()];
    assert!(plan_billing(&config, &[], &twice, window(1), T0 + INCREMENT_MS).is_err());
    let far = BillingWindow { from_ms: 0, to_ms: 0 };
    assert!(plan_billing(&config, &[], &terms, far, u64::MAX).is_err(), "no overflow near the end of time");
    let broken = PricingConfig { computation_exponent: -1.0, ..PricingConfig::default() };
    assert!(plan_billing(&broken, &[], &terms, window(1), T0 + INCREMENT_MS).is_err());
}

#[test]
fn split_proportionally_adds_up_exactly() {
    let parts = split_proportionally(Micros::new(10), &[1.0, 1.0, 1.0]);
    assert_eq!(parts, vec![Micros::new(4), Micros::new(3), Micros::new(3)]);
    let parts = split_proportionally(Micros::new(7), &[0.0, 0.0]);
    assert_eq!(parts, vec![Micros::new(4), Micros::new(3)]);
    let parts = split_proportionally(Micros::new(1_000_000_007), &[1e-300, 3.0, 1e300]);
    assert_eq!(Micros::checked_sum(parts).unwrap(), Micros::new(1_000_000_007));
    assert!(split_proportionally(Micros::new(5), &[]).is_empty());
}

#[test]
fn pay_waits_for_the_judgement_of_a_result_and_is_never_paid_when_withheld() {
    let config = PricingConfig::default();
    let client = party(1);
    let job = JobId::random();
    let terms = [JobTerms::new(job, client.clone())];
    let mut waiting = record(1, &client, job, 0, 10.0, T0, Some(T0 + INCREMENT_MS));
    waiting.pay_awaits_judgement = true;
    let plan = plan_billing(&config, std::slice::from_ref(&waiting), &terms, window(1), T0 + INCREMENT_MS).unwrap();
    assert!(amounts(&plan, Purpose::ProviderPay).is_empty(), "no pay before the verdict");
    assert_eq!(plan.records_open, 1);
    assert!(!waiting.is_fully_billed(T0 + INCREMENT_MS), "the record stays open for a later pass");
    // The client's computation is charged whatever the verdict: it asked for the replicas.
    assert_eq!(amounts(&plan, Purpose::Computation), vec![Micros::new(2_182_382)]);

    let mut valid = waiting.clone();
    valid.pay_awaits_judgement = false;
    let plan = plan_billing(&config, std::slice::from_ref(&valid), &terms, window(1), T0 + INCREMENT_MS).unwrap();
    assert_eq!(amounts(&plan, Purpose::ProviderPay), vec![Micros::new(625_000)]);
    assert!(valid.is_fully_billed(T0 + INCREMENT_MS));

    let mut invalid = valid.clone();
    invalid.pay_withheld = true;
    let plan = plan_billing(&config, std::slice::from_ref(&invalid), &terms, window(1), T0 + INCREMENT_MS).unwrap();
    assert!(amounts(&plan, Purpose::ProviderPay).is_empty(), "withheld pay is never paid");
    assert_eq!(plan.records_open, 0);
    assert!(invalid.is_fully_billed(T0 + INCREMENT_MS), "nothing more is due: the record is done");
}
