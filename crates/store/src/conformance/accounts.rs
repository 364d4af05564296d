//! Conformance: The ledger's state, the journal of work and notices.

use super::*;

fn work_record(id: u64, job: JobId, launched_ms: u64) -> WorkRecord {
    WorkRecord {
        id,
        client: party(1, Role::Client).id,
        job,
        task: id,
        provider: party(2, Role::Provider).id,
        engine: party(2, Role::Provider).id,
        power_gflops: 12.5,
        availability: 0.75,
        launched_ms,
        cancelled_ms: None,
        concluded_ms: None,
        final_status: false,
        data_in_bytes: 1_000,
        data_out_bytes: 0,
        pay_awaits_judgement: false,
        pay_withheld: false,
    }
}

pub fn work_records_are_journaled_and_billed(store: &impl Store) {
    let (a, b) = (JobId::random(), JobId::random());
    let ids = |records: Vec<WorkRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.work_record(1)?, None);
            let mut r1 = work_record(1, a, 100);
            for record in [&r1, &work_record(2, a, 50), &work_record(3, b, 200), &work_record(4, b, 50)] {
                tx.upsert_work_record(record)?;
            }
            assert_eq!(tx.work_record(1)?, Some(r1.clone()));
            assert_eq!(ids(tx.unbilled_work_records(1_000, 10)?), vec![2, 4, 1, 3], "oldest launch first, then id");
            assert_eq!(ids(tx.unbilled_work_records(150, 10)?), vec![2, 4, 1], "launched before the bound");
            assert_eq!(ids(tx.unbilled_work_records(1_000, 2)?), vec![2, 4]);

            // An upsert replaces the whole record, the times it is selected by included.
            r1.launched_ms = 20;
            r1.cancelled_ms = Some(250);
            r1.concluded_ms = Some(300);
            r1.final_status = true;
            r1.data_out_bytes = 7;
            tx.upsert_work_record(&r1)?;
            assert_eq!(tx.work_record(1)?, Some(r1.clone()));
            assert_eq!(ids(tx.unbilled_work_records(1_000, 10)?), vec![1, 2, 4, 3]);
            assert_eq!(ids(tx.unbilled_work_records(30, 10)?), vec![1]);

            assert_eq!(ids(tx.work_records_of_job(a)?), vec![1, 2]);
            assert_eq!(tx.work_records_of_job(a)?[0], r1);
            assert_eq!(tx.unbilled_records_of_job(a)?, 2);
            tx.mark_work_records_billed(&[1, 3])?;
            tx.mark_work_records_billed(&[])?;
            assert_eq!(ids(tx.unbilled_work_records(1_000, 10)?), vec![2, 4]);
            assert_eq!((tx.unbilled_records_of_job(a)?, tx.unbilled_records_of_job(b)?), (1, 1));
            assert_eq!(ids(tx.work_records_of_job(a)?), vec![1, 2], "billed records stay in the journal");
            assert_eq!(tx.unbilled_records_of_job(JobId::random())?, 0);
            Ok(())
        })
        .unwrap();
}

pub fn notices_wait_until_delivered(store: &impl Store) {
    let client = party(1, Role::Client);
    let ids = |rows: Vec<NoticeRow>| rows.iter().map(|n| n.id).collect::<Vec<_>>();
    store
        .write(|tx| -> R<()> {
            let a = tx.push_notice(&client.id, "webhook", r#"{"n":"a"}"#, 100)?;
            let b = tx.push_notice(&client.id, "email", r#"{"n":"b"}"#, 50)?;
            let c = tx.push_notice(&client.id, "webhook", r#"{"n":"c"}"#, 100)?;
            assert!(a < b && b < c, "notice ids grow");
            assert!(tx.due_notices(49, 10)?.is_empty());
            let due = tx.due_notices(100, 10)?;
            assert_eq!(ids(due.clone()), vec![b, a, c], "earliest try first, then id");
            assert_eq!(
                due[0],
                NoticeRow {
                    id: b,
                    client: client.id.clone(),
                    channel: "email".into(),
                    body: r#"{"n":"b"}"#.into(),
                    attempts: 0,
                    next_try_ms: 50
                }
            );
            assert_eq!(ids(tx.due_notices(100, 2)?), vec![b, a]);
            tx.notice_attempted(b, false, 500, Some("connection refused"))?;
            assert_eq!(ids(tx.due_notices(100, 10)?), vec![a, c], "a failed notice waits for its next try");
            let due = tx.due_notices(500, 10)?;
            assert_eq!(ids(due.clone()), vec![a, c, b]);
            assert_eq!((due[2].attempts, due[2].next_try_ms), (1, 500));
            tx.notice_attempted(a, true, 0, None)?;
            assert_eq!(ids(tx.due_notices(1_000, 10)?), vec![c, b], "a delivered notice is never due again");
            Ok(())
        })
        .unwrap();
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::new(text).unwrap()
}

fn transfer(id: u64, key_text: &str, debit: &AccountId, credit: &AccountId, amount: i64, created_ms: u64) -> Transfer {
    let amount = Micros::new(amount);
    Transfer {
        id: TransferId(id),
        request: TransferRequest {
            key: key(key_text),
            action: Action::Post {
                debit: debit.clone(),
                credit: credit.clone(),
                amount,
                over_limit: OverLimit::Refuse,
            },
            purpose: Purpose::Adjustment,
            memo: Memo { job: Some(JobId::random()), record: Some(id), ..Memo::default() },
        },
        debit: debit.clone(),
        credit: credit.clone(),
        posted: amount,
        from_reservation: Micros::ZERO,
        reserved: Micros::ZERO,
        released: Micros::ZERO,
        capped: Micros::ZERO,
        created_ms,
    }
}

/// The `LedgerStore` methods one by one, below the ledger's own checks.
pub fn ledger_store_round_trips(store: &impl Store) {
    let client = AccountId::Party(party(1, Role::Client).id);
    let platform = AccountId::Platform;
    let external = AccountId::External;
    let t1 = transfer(1, "adjust:1", &client, &platform, 300, 100);
    let t2 = transfer(2, "adjust:2", &platform, &client, 100, 200);
    let t3 = transfer(3, "adjust:3", &external, &platform, 50, 150);
    store
        .write(|tx| -> R<()> {
            let l = tx.ledger();
            assert_eq!(l.account(&client).map_err(ledger_failed)?, None);
            assert!(l.accounts().map_err(ledger_failed)?.is_empty());
            assert_eq!(l.totals().map_err(ledger_failed)?, LedgerTotals::default());
            let mut account = idlegrid_ledger::Account::new(client.clone(), Some(Micros::new(5_000_000)), 10);
            l.put_account(&account).map_err(ledger_failed)?;
            assert_eq!(l.account(&client).map_err(ledger_failed)?, Some(account.clone()));
            account.debits_posted = Micros::new(300);
            account.credits_pending = Micros::new(7);
            l.put_account(&account).map_err(ledger_failed)?;
            assert_eq!(
                l.account(&client).map_err(ledger_failed)?,
                Some(account.clone()),
                "put_account replaces the row"
            );
            let mut house = idlegrid_ledger::Account::new(platform.clone(), None, 10);
            house.credits_posted = Micros::new(300);
            house.debits_pending = Micros::new(7);
            l.put_account(&house).map_err(ledger_failed)?;
            let mut all = l.accounts().map_err(ledger_failed)?;
            all.sort_by_key(|a| a.id.clone());
            let mut expected = vec![account.clone(), house.clone()];
            expected.sort_by_key(|a| a.id.clone());
            assert_eq!(all, expected);
            let totals = l.totals().map_err(ledger_failed)?;
            assert_eq!(
                totals,
                LedgerTotals {
                    accounts: 2,
                    debits_posted: Micros::new(300),
                    credits_posted: Micros::new(300),
                    debits_pending: Micros::new(7),
                    credits_pending: Micros::new(7)
                }
            );
            assert!(totals.is_balanced());

            assert_eq!(l.next_transfer_id().map_err(ledger_failed)?, TransferId(1));
            l.insert_transfer(&t1).map_err(ledger_failed)?;
            assert_eq!(l.next_transfer_id().map_err(ledger_failed)?, TransferId(2));
            l.insert_transfer(&t2).map_err(ledger_failed)?;
            l.insert_transfer(&t3).map_err(ledger_failed)?;
            assert_eq!(l.transfer(TransferId(1)).map_err(ledger_failed)?, Some(t1.clone()));
            assert_eq!(l.transfer(TransferId(9)).map_err(ledger_failed)?, None);
            assert_eq!(l.transfer_by_key(&key("adjust:2")).map_err(ledger_failed)?, Some(t2.clone()));
            assert_eq!(l.transfer_by_key(&key("adjust:9")).map_err(ledger_failed)?, None);
            assert_eq!(l.next_transfer_id().map_err(ledger_failed)?, TransferId(4));
            let of = |l: &mut dyn idlegrid_ledger::LedgerStore,
                      account: &AccountId,
                      from: u64,
                      to: u64|
             -> R<Vec<u64>> {
                Ok(l.transfers_of_account(account, from, to).map_err(ledger_failed)?.iter().map(|t| t.id.0).collect())
            };
            assert_eq!(of(l, &client, 0, 1_000)?, vec![1, 2], "debits and credits, in id order");
            assert_eq!(of(l, &platform, 0, 1_000)?, vec![1, 2, 3]);
            assert_eq!(of(l, &client, 100, 200)?, vec![1], "the end is excluded");
            assert_eq!(of(l, &client, 101, 1_000)?, vec![2]);
            assert_eq!(of(l, &external, 0, 150)?, Vec::<u64>::new());
            assert_eq!(l.transfers_of_account(&external, 150, 151).map_err(ledger_failed)?, vec![t3.clone()]);

            assert_eq!(l.reservation(TransferId(1)).map_err(ledger_failed)?, None);
            let mut reservation = Reservation {
                id: TransferId(1),
                debit: client.clone(),
                credit: platform.clone(),
                kind: ReservationKind::Maximum,
                amount: Micros::new(1_000),
                settled_from_pending: Micros::ZERO,
                settled_beyond: Micros::ZERO,
                released: Micros::ZERO,
            };
            l.put_reservation(&reservation).map_err(ledger_failed)?;
            assert_eq!(l.reservation(TransferId(1)).map_err(ledger_failed)?, Some(reservation.clone()));
            reservation.settled_from_pending = Micros::new(400);
            reservation.released = Micros::new(600);
            l.put_reservation(&reservation).map_err(ledger_failed)?;
            assert_eq!(
                l.reservation(TransferId(1)).map_err(ledger_failed)?,
                Some(reservation),
                "put_reservation replaces"
            );
            Ok(())
        })
        .unwrap();

    // Keys and ids are unique: a second transfer with a used key, or a used id, is refused.
    for duplicate in
        [transfer(4, "adjust:1", &client, &platform, 1, 300), transfer(3, "adjust:4", &client, &platform, 1, 300)]
    {
        let refused: R<()> = store.write(|tx| {
            assert!(tx.ledger().insert_transfer(&duplicate).is_err(), "{duplicate:?} must be refused");
            Err(StoreError::Conflict("roll back".into()))
        });
        assert!(refused.is_err());
    }
    store
        .read(|tx| -> R<()> {
            let l = tx.ledger();
            assert_eq!(l.next_transfer_id().map_err(ledger_failed)?, TransferId(4));
            assert_eq!(l.transfer(TransferId(3)).map_err(ledger_failed)?, Some(t3.clone()), "transfers are immutable");
            Ok(())
        })
        .unwrap();
}

/// The ledger's state machine over the store: money moves once per key, and a rolled-back
/// transaction moves none.
pub fn ledger_moves_money_once_and_rolls_back(store: &impl Store) {
    let client = AccountId::Party(party(1, Role::Client).id);
    let provider = AccountId::Party(party(2, Role::Provider).id);
    let j = JobId::random();
    store
        .write(|tx| -> R<()> {
            let mut ledger = Ledger::new(tx.ledger());
            ledger.open_system_accounts(0).map_err(ledger_failed)?;
            ledger.open_account(client.clone(), Some(Micros::new(1_000_000)), 0).map_err(ledger_failed)?;
            ledger.open_account(provider.clone(), Some(Micros::ZERO), 0).map_err(ledger_failed)?;
            let deposit =
                ledger.deposit(key("deposit:1"), client.clone(), Micros::new(5_000_000), 10).map_err(ledger_failed)?;
            assert!(!deposit.repeated);
            let again =
                ledger.deposit(key("deposit:1"), client.clone(), Micros::new(5_000_000), 11).map_err(ledger_failed)?;
            assert!(again.repeated && again.transfer == deposit.transfer, "a retried key moves nothing");
            ledger
                .reserve_job(j, client.clone(), Micros::new(2_000_000), ReservationKind::Maximum, 20)
                .map_err(ledger_failed)?;
            let reservation = ledger.job_reservation(j).map_err(ledger_failed)?.unwrap();
            let settle = TransferRequest {
                key: key("compute:1"),
                action: Action::Settle { reservation: reservation.id, amount: Micros::new(500_000) },
                purpose: Purpose::Computation,
                memo: Memo::default(),
            };
            ledger.execute(settle, 30).map_err(ledger_failed)?;
            let pay = TransferRequest {
                key: key("pay:1"),
                action: Action::Post {
                    debit: AccountId::Platform,
                    credit: provider.clone(),
                    amount: Micros::new(300_000),
                    over_limit: OverLimit::Refuse,
                },
                purpose: Purpose::ProviderPay,
                memo: Memo::default(),
            };
            ledger.execute(pay, 31).map_err(ledger_failed)?;
            let released = ledger.release_job(j, 40).map_err(ledger_failed)?.unwrap();
            assert_eq!(released.transfer.released, Micros::new(1_500_000));
            let account = ledger.account(&client).map_err(ledger_failed)?;
            assert_eq!(
                (account.balance_posted().unwrap(), account.debits_pending),
                (Micros::new(4_500_000), Micros::ZERO)
            );
            assert_eq!(
                ledger.account(&provider).map_err(ledger_failed)?.balance_posted().unwrap(),
                Micros::new(300_000)
            );
            let totals = ledger.check_balanced().map_err(ledger_failed)?;
            assert_eq!(totals.accounts, 4);
            Ok(())
        })
        .unwrap();
    let aborted: R<()> = store.write(|tx| {
        Ledger::new(tx.ledger())
            .deposit(key("deposit:2"), client.clone(), Micros::new(1), 50)
            .map_err(ledger_failed)?;
        Err(StoreError::Conflict("abort".into()))
    });
    assert!(aborted.is_err());
    store
        .read(|tx| -> R<()> {
            let l = tx.ledger();
            assert_eq!(
                l.transfer_by_key(&key("deposit:2")).map_err(ledger_failed)?,
                None,
                "a rolled-back transfer leaves no trace"
            );
            let statement = l.transfers_of_account(&client, 0, u64::MAX).map_err(ledger_failed)?;
            let keys: Vec<&str> = statement.iter().map(|t| t.request.key.as_str()).collect();
            assert_eq!(keys, vec!["deposit:1", &format!("reserve:{j}"), "compute:1", &format!("release:{j}")]);
            assert!(idlegrid_ledger::check_balanced(l).is_ok());
            Ok(())
        })
        .unwrap();
}
