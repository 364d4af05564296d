//! Money on the server (P7, P4.11, P4.12): accounts opened at registration, the journal of work
//! written with every placement's state change, reservations at launch, billing passes, holds
//! for a job's maximum cost and a client's account limit, barter, statements, notices and the
//! purge of results nobody fetched (deposits and payouts: `requests`). The arithmetic is `idlegrid_ledger`'s; this module
//! only decides when it runs and applies what it reports.

use std::collections::{BTreeMap, BTreeSet};

use idlegrid_ledger::{
    AccountId, JobTerms, Ledger, LedgerError, Micros, ReservationKind, StatementPeriod, WorkRecord, plan_billing,
};
use idlegrid_protocol::messages::{AccountInfo, ServerToClient, ServerToProvider};
use idlegrid_protocol::{ErrorCode, ErrorReport};
use idlegrid_store::{JobRow, StoreError, TaskRow, Tx};
use idlegrid_types::{AssignmentId, JobId, JobState, PartyId, Role, TaskState};
use serde::{Deserialize, Serialize};

use crate::session::job_info;
use crate::{Coordinator, CoordinatorError, Effects};

/// Why the server holds a job stopped.
pub const HOLD_COST_MAX: &str = "cost_max";
pub const HOLD_ACCOUNT_LIMIT: &str = "account_limit";

const BILLED_TO_KEY: &str = "billing_watermark_ms";

fn ledger_error(error: LedgerError) -> StoreError {
    crate::requests::ledger_refusal(error)
}

/// Where a client wants its notices (P4.12).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NoticeSettings {
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub email: Option<String>,
}

/// What a notice says; sent as JSON to webhooks and as text by e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// "completed", "failed", "stopped", "purge_warning", "purged", "deadline_missed" or "held"
    /// (its maximum cost) about a job; "market_awaiting", "market_agreed", "market_signed",
    /// "market_started", "market_delivered", "market_failed", "market_settled" or "market_draw"
    /// about the market (`name` says what happened).
    pub kind: String,
    /// The job (absent in market notices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobId>,
    pub name: String,
    pub succeeded: u64,
    pub failed: u64,
    pub reason: Option<String>,
    pub at_ms: u64,
    /// Where a webhook goes and how it is signed (not shown to the receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Notice {
    /// The text a person reads (e-mail body, subject line first).
    pub fn subject(&self) -> String {
        let Some(job) = self.job else { return format!("Idlegrid market: {}", self.name) };
        let name = if self.name.is_empty() { job.to_string() } else { format!("{} ({job})", self.name) };
        match self.kind.as_str() {
            "completed" => format!("Idlegrid job {name} completed"),
            "failed" => format!("Idlegrid job {name} completed with {} failed tasks", self.failed),
            "stopped" => format!("Idlegrid job {name} was stopped"),
            "purge_warning" => format!("Idlegrid job {name}: results will be deleted soon"),
            "deadline_missed" => format!("Idlegrid job {name} will miss its deadline"),
            "held" => format!("Idlegrid job {name}: no more tasks are placed"),
            other => format!("Idlegrid job {name}: {other}"),
        }
    }

    pub fn text(&self) -> String {
        let mut text = match self.job {
            Some(_) => format!("{}\n\n{} tasks succeeded, {} failed.\n", self.subject(), self.succeeded, self.failed),
            None => format!("{}\n\n", self.subject()),
        };
        if let Some(reason) = &self.reason {
            text.push_str(&format!("{reason}\n"));
        }
        text
    }

    /// The JSON a webhook receives (without delivery details).
    pub fn public_json(&self) -> String {
        let public = Notice { webhook_url: None, webhook_secret: None, email: None, ..self.clone() };
        serde_json::to_string(&public).expect("notices serialize")
    }
}

/// A statement request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct StatementQuery {
    #[serde(default)]
    pub from_ms: u64,
    #[serde(default = "far_future")]
    pub to_ms: u64,
    #[serde(default)]
    pub period: Option<StatementPeriodName>,
}

fn far_future() -> u64 {
    u64::MAX / 2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementPeriodName {
    Day,
    Month,
    Whole,
}

impl Coordinator {
    /// Open the platform's own accounts (once).
    pub(crate) fn open_system_accounts(&self, tx: &mut dyn Tx, now_ms: u64) -> Result<(), StoreError> {
        Ledger::new(tx.ledger()).open_system_accounts(now_ms).map_err(ledger_error)
    }

    /// Open a party's account at registration: a client may owe up to its limit, a provider
    /// spends only what it earned.
    pub(crate) fn open_party_account(
        &self,
        tx: &mut dyn Tx,
        party: &PartyId,
        role: Role,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let limit = match role {
            Role::Client => self.config.client_overdraft_max_micros.map(Micros::new),
            Role::Provider => Some(Micros::ZERO),
            // Operators run the platform; they neither pay nor earn.
            Role::Operator => return Ok(()),
        };
        let id = AccountId::Party(party.clone());
        let mut ledger = Ledger::new(tx.ledger());
        if ledger.account(&id).is_err() {
            ledger.open_account(id, limit, now_ms).map_err(ledger_error)?;
        }
        Ok(())
    }

    pub fn account_info(&self, tx: &mut dyn Tx, party: &PartyId) -> Result<AccountInfo, CoordinatorError> {
        let account = Ledger::new(tx.ledger())
            .account(&AccountId::Party(party.clone()))
            .map_err(|e| CoordinatorError::internal(format!("no account: {e}")))?;
        let balance = account.balance_posted().map_err(|e| CoordinatorError::internal(e.to_string()))?;
        let available = account.available().map_err(|e| CoordinatorError::internal(e.to_string()))?;
        let over_limit = account.is_over_limit().map_err(|e| CoordinatorError::internal(e.to_string()))?;
        Ok(AccountInfo {
            account: account.id.to_string(),
            balance_micros: balance.as_i64(),
            available_micros: available.as_i64(),
            overdraft_max_micros: account.overdraft_max.map(Micros::as_i64),
            over_limit,
        })
    }

    /// The journal record of a new placement (P7.1), in the scheduling transaction.
    /// `power_gflops` is the engine's rating per slot: its measured speed, or the default until
    /// a benchmark measured it (P5.1).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn journal_launch(
        &self,
        tx: &mut dyn Tx,
        assignment: AssignmentId,
        job: &JobRow,
        task: &TaskRow,
        provider: &PartyId,
        power_gflops: f64,
        data_in_bytes: u64,
        awaits_judgement: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let record = WorkRecord {
            id: assignment.0,
            client: job.client.clone(),
            job: job.id,
            task: task.index,
            provider: provider.clone(),
            engine: provider.clone(),
            power_gflops,
            availability: self.config.pricing.provider_reliability_average,
            launched_ms: now_ms,
            cancelled_ms: None,
            concluded_ms: None,
            final_status: false,
            data_in_bytes,
            data_out_bytes: 0,
            pay_awaits_judgement: awaits_judgement,
            pay_withheld: false,
        };
        tx.upsert_work_record(&record)
    }

    /// The server told the engine to drop or hand back a placement.
    pub(crate) fn journal_cancel(
        &self,
        tx: &mut dyn Tx,
        assignment: AssignmentId,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if let Some(mut record) = tx.work_record(assignment.0)?
            && record.cancelled_ms.is_none()
            && record.concluded_ms.is_none()
        {
            record.cancelled_ms = Some(now_ms);
            tx.upsert_work_record(&record)?;
        }
        Ok(())
    }

    /// A placement ended; `final_bytes` is set for the one whose final status the client gets.
    pub(crate) fn journal_conclude(
        &self,
        tx: &mut dyn Tx,
        assignment: AssignmentId,
        final_bytes: Option<u64>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if let Some(mut record) = tx.work_record(assignment.0)? {
            if record.concluded_ms.is_none() {
                record.concluded_ms = Some(now_ms.max(record.launched_ms));
            }
            if let Some(bytes) = final_bytes {
                record.final_status = true;
                record.data_out_bytes = bytes;
            }
            tx.upsert_work_record(&record)?;
        }
        Ok(())
    }

    /// Reserve a job's maximum cost at launch; `Err` says why the job cannot launch (the
    /// account cannot hold it, or the amount is not one the ledger takes).
    pub(crate) fn reserve_launch(
        &self,
        tx: &mut dyn Tx,
        job: &JobRow,
        now_ms: u64,
    ) -> Result<Result<(), ErrorReport>, StoreError> {
        let Some(cost_max) = job.properties.cost_max_micros else { return Ok(Ok(())) };
        let payer = AccountId::Party(job.client.clone());
        let mut ledger = Ledger::new(tx.ledger());
        if ledger.job_reservation(job.id).map_err(ledger_error)?.is_some() {
            return Ok(Ok(()));
        }
        let amount = Micros::new(i64::try_from(cost_max).unwrap_or(i64::MAX));
        match ledger.reserve_job(job.id, payer, amount, ReservationKind::Maximum, now_ms) {
            Ok(_) => Ok(Ok(())),
            Err(LedgerError::OverLimit { available, shortfall, .. }) => Ok(Err(ErrorReport::new(
                ErrorCode::LimitExceeded,
                format!(
                    "the account cannot cover the job's maximum cost of {amount}: {available} is available, \
                     {shortfall} short; ask for a deposit first (idlegrid account deposit)"
                ),
            ))),
            Err(LedgerError::Storage(inner)) => Err(StoreError::Database(inner.to_string())),
            Err(other) => Ok(Err(ErrorReport::new(ErrorCode::BadRequest, format!("cost_max_micros: {other}")))),
        }
    }

    /// Stop a job's work on behalf of the server (hold), keeping it resumable.
    pub(crate) fn hold_job(
        &self,
        tx: &mut dyn Tx,
        job: &mut JobRow,
        hold: &str,
        reason: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        if job.hold.is_some() || !matches!(job.state, JobState::Running) {
            return Ok(());
        }
        crate::schedule::move_all(tx, job, &[TaskState::Queued], TaskState::Stopped)?;
        for assignment in tx.active_assignments_of_job(job.id)? {
            if let Some(mut task) = tx.task_by_key(assignment.task)?
                && crate::schedule::transition(tx, &mut task, job, idlegrid_types::TaskEvent::Stop)?.is_some()
            {
                self.journal_cancel(tx, assignment.id, now_ms)?;
                self.tell_provider(
                    tx,
                    &assignment.provider,
                    &ServerToProvider::Stop { assignment: assignment.id },
                    fx,
                )?;
            }
        }
        job.state = JobState::Stopped;
        job.hold = Some(hold.to_string());
        tx.save_job_state(job.id, job.state, &job.counts)?;
        tx.set_job_hold(job.id, Some(hold))?;
        tracing::info!(job = %job.id, %reason, "job held");
        self.notify(tx, job, "stopped", Some(reason), now_ms)?;
        for attachment in tx.attachments_of_job(job.id)? {
            crate::session::push(
                tx,
                fx,
                attachment.session,
                None,
                &ServerToClient::JobProperties(job_info(job)),
                None,
            )?;
        }
        Ok(())
    }

    /// Resume a job the server held.
    pub(crate) fn release_hold(
        &self,
        tx: &mut dyn Tx,
        job: &mut JobRow,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        crate::schedule::move_all(tx, job, &[TaskState::Stopped], TaskState::Queued)?;
        job.state = JobState::Running.settle(&job.counts);
        job.hold = None;
        tx.save_job_state(job.id, job.state, &job.counts)?;
        tx.set_job_hold(job.id, None)?;
        self.schedule(tx, now_ms, fx)?;
        Ok(())
    }

    /// A provider makes what its engines earned spendable by a client account (barter).
    pub fn barter(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        client: &PartyId,
        amount_micros: i64,
        reference: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<AccountInfo, CoordinatorError> {
        idlegrid_ledger::check_amount(Micros::new(amount_micros))
            .map_err(|e| CoordinatorError::bad_request(format!("amount_micros: {e}")))?;
        match tx.party(client)? {
            Some(party) if party.role == Role::Client => {}
            _ => return Err(CoordinatorError::bad_request(format!("{client} is not a registered client"))),
        }
        let key = keys_for(&format!("barter:{provider}:{reference}"))?;
        Ledger::new(tx.ledger())
            .barter_credit(key, provider, client, Micros::new(amount_micros), now_ms)
            .map_err(crate::requests::ledger_api_error)?;
        self.resume_if_current(tx, &AccountId::Party(client.clone()), now_ms, fx)?;
        self.account_info(tx, provider)
    }

    /// A client's charges by job, or a provider's earnings by engine, by period (P7.7).
    pub fn statement(
        &self,
        tx: &mut dyn Tx,
        party: &crate::Party,
        query: StatementQuery,
    ) -> Result<idlegrid_ledger::Statement, CoordinatorError> {
        let account = AccountId::Party(party.id.clone());
        let transfers = tx
            .ledger()
            .transfers_of_account(&account, query.from_ms, query.to_ms)
            .map_err(|e| CoordinatorError::internal(e.to_string()))?;
        let span = idlegrid_ledger::Period { start_ms: query.from_ms, end_ms: query.to_ms };
        let period = match query.period.unwrap_or(StatementPeriodName::Whole) {
            StatementPeriodName::Day => StatementPeriod::Day,
            StatementPeriodName::Month => StatementPeriod::Month,
            StatementPeriodName::Whole => StatementPeriod::Whole,
        };
        let statement = match party.role {
            Role::Client => idlegrid_ledger::client_statement(&account, &transfers, span, period),
            Role::Provider => idlegrid_ledger::provider_statement(&account, &transfers, span, period),
            Role::Operator => return Err(CoordinatorError::forbidden("operators have no account")),
        };
        let statement = statement.map_err(|e| CoordinatorError::bad_request(e.to_string()))?;
        let filter = idlegrid_ledger::RequestFilter {
            account: Some(account),
            state: None,
            created_from_ms: query.from_ms,
            created_to_ms: query.to_ms,
            limit: crate::requests::REQUESTS_LISTED_MAX,
        };
        let requests = Ledger::new(tx.ledger()).requests(&filter).map_err(crate::requests::ledger_api_error)?;
        Ok(statement.with_requests(requests))
    }

    pub fn set_notices(
        &self,
        tx: &mut dyn Tx,
        client: &PartyId,
        settings: NoticeSettings,
    ) -> Result<(), CoordinatorError> {
        if let Some(url) = &settings.webhook_url {
            let printable = url.chars().all(|c| c.is_ascii_graphic());
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2000 || !printable {
                return Err(CoordinatorError::bad_request(
                    "webhook_url must be an http(s) URL of printable characters, without spaces",
                ));
            }
            crate::webhooks::check_url(url, &self.config.webhook_allow).map_err(CoordinatorError::bad_request)?;
        }
        if let Some(email) = &settings.email
            && (!email.contains('@') || email.len() > 320 || email.contains(['\r', '\n']))
        {
            return Err(CoordinatorError::bad_request("email must be one e-mail address"));
        }
        tx.set_client_settings(client, &serde_json::to_string(&settings).expect("settings serialize"))?;
        Ok(())
    }

    /// Queue a notice about a job to every channel its client chose.
    pub(crate) fn notify(
        &self,
        tx: &mut dyn Tx,
        job: &JobRow,
        kind: &str,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let notice = Notice {
            kind: kind.to_string(),
            job: Some(job.id),
            name: job.properties.name.clone(),
            succeeded: job.counts.succeeded,
            failed: job.counts.failed,
            reason: reason.map(str::to_string),
            at_ms: now_ms,
            webhook_url: None,
            webhook_secret: None,
            email: None,
        };
        self.send_notice(tx, &job.client, notice, now_ms)
    }

    /// Queue a notice to every channel `party` chose (none chosen: nothing is sent).
    pub(crate) fn send_notice(
        &self,
        tx: &mut dyn Tx,
        party: &PartyId,
        notice: Notice,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let settings: NoticeSettings =
            tx.client_settings(party)?.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        if let Some(url) = settings.webhook_url {
            let to_webhook =
                Notice { webhook_url: Some(url), webhook_secret: settings.webhook_secret.clone(), ..notice.clone() };
            tx.push_notice(party, "webhook", &serde_json::to_string(&to_webhook).expect("serializes"), now_ms)?;
        }
        if let Some(email) = settings.email {
            let to_mail = Notice { email: Some(email), ..notice };
            tx.push_notice(party, "email", &serde_json::to_string(&to_mail).expect("serializes"), now_ms)?;
        }
        Ok(())
    }

    /// A job just completed: tell its client.
    pub(crate) fn job_completed(&self, tx: &mut dyn Tx, job: &JobRow, now_ms: u64) -> Result<(), StoreError> {
        let kind = if job.counts.failed > 0 { "failed" } else { "completed" };
        self.notify(tx, job, kind, None, now_ms)
    }

    /// Notices due for delivery (the shell delivers them and reports back).
    pub fn due_notices(
        &self,
        tx: &mut dyn Tx,
        now_ms: u64,
    ) -> Result<Vec<(i64, String, Notice, u32)>, CoordinatorError> {
        Ok(tx
            .due_notices(now_ms, 100)?
            .into_iter()
            .filter_map(|row| {
                serde_json::from_str(&row.body).ok().map(|notice| (row.id, row.channel, notice, row.attempts))
            })
            .collect())
    }

    /// Record a delivery attempt: delivered, or try again later with back-off (given up after
    /// a day's worth of attempts).
    pub fn notice_attempted(
        &self,
        tx: &mut dyn Tx,
        id: i64,
        attempts: u32,
        outcome: Result<(), String>,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        match outcome {
            Ok(()) => tx.notice_attempted(id, true, now_ms, None)?,
            Err(error) => {
                let give_up = attempts + 1 >= self.config.notice_attempts_max;
                let delay = 1000u64.saturating_mul(1 << (attempts.min(16))).min(3_600_000);
                tx.notice_attempted(id, give_up, now_ms + delay, Some(&error))?;
                if give_up {
                    tracing::warn!(notice = id, %error, "notice given up after its last attempt");
                }
            }
        }
        Ok(())
    }

    /// One billing pass (P7.1-P7.6): bill every increment closed since the last pass from the
    /// journal, exactly once, then stop jobs at their maximum cost and hold the jobs of clients
    /// over their account limit. Runs in one transaction, so a crash bills nothing or all.
    pub fn bill(
        &self,
        tx: &mut dyn Tx,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<idlegrid_ledger::BillingReport, StoreError> {
        let watermark = match tx.meta(BILLED_TO_KEY)? {
            Some(bytes) => String::from_utf8_lossy(&bytes).parse().unwrap_or(now_ms),
            None => {
                // The first pass bills from the increment of the oldest work on record.
                let oldest = tx.unbilled_work_records(u64::MAX, 1)?.first().map(|r| r.launched_ms).unwrap_or(now_ms);
                let start = oldest - oldest % self.config.pricing.increment_ms.max(1);
                tx.set_meta(BILLED_TO_KEY, start.to_string().as_bytes())?;
                start
            }
        };
        let window = idlegrid_ledger::BillingWindow::closed_until(watermark, now_ms, &self.config.pricing);
        if window.to_ms <= watermark {
            return Ok(Default::default());
        }
        let records = tx.unbilled_work_records(window.to_ms, 100_000)?;
        let mut terms = Vec::new();
        let mut seen = BTreeSet::new();
        for record in &records {
            if seen.insert(record.job) {
                let mut job_terms = JobTerms::new(record.job, record.client.clone());
                if let Some(job) = tx.job(record.job)? {
                    job_terms.node_power_gflops = job.properties.cluster.as_ref().and_then(|c| c.node_cpu_gflops);
                    job_terms.reliability = job.properties.cluster.as_ref().and_then(|c| c.reliability);
                }
                terms.push(job_terms);
            }
        }
        let plan = plan_billing(&self.config.pricing, &records, &terms, window, now_ms).map_err(ledger_error)?;
        let report = Ledger::new(tx.ledger()).apply_billing(&plan, now_ms).map_err(ledger_error)?;
        for line in &report.refused {
            tracing::error!(
                key = %line.key, amount = %line.amount, reason = %line.reason,
                "a billing line was refused and not charged: check the pricing and the journal record it names"
            );
        }
        let billed: Vec<u64> = records.iter().filter(|r| r.is_fully_billed(window.to_ms)).map(|r| r.id).collect();
        tx.mark_work_records_billed(&billed)?;
        tx.set_meta(BILLED_TO_KEY, window.to_ms.to_string().as_bytes())?;
        // Engines whose work was settled in this pass learn their new figures.
        let settled: Vec<&idlegrid_ledger::WorkRecord> =
            records.iter().filter(|r| r.is_fully_billed(window.to_ms)).collect();
        self.settle_work_totals(tx, &settled, fx)?;
        for stop in &report.jobs_to_stop {
            if let Some(mut job) = tx.job(stop.job)? {
                let reason = format!("the job reached its maximum cost ({stop:?})", stop = stop.reason);
                self.hold_job(tx, &mut job, HOLD_COST_MAX, &reason, now_ms, fx)?;
            }
        }
        let over: BTreeMap<PartyId, idlegrid_ledger::AccountStanding> = report
            .accounts_over_limit
            .iter()
            .filter_map(|s| match &s.account {
                AccountId::Party(p) => Some((p.clone(), s.clone())),
                _ => None,
            })
            .collect();
        for (client, standing) in over {
            let reason = format!(
                "the account is over its limit: {} available with an overdraft of {}; deposit to resume",
                standing.available, standing.overdraft_max
            );
            for mut job in tx.jobs_of_client(&client)? {
                if job.state == JobState::Running {
                    self.hold_job(tx, &mut job, HOLD_ACCOUNT_LIMIT, &reason, now_ms, fx)?;
                }
            }
        }
        // Reservations of jobs that are over and fully billed go back to their clients.
        for job in seen {
            let done = match tx.job(job)? {
                None => true,
                Some(row) => row.state == JobState::Completed,
            };
            if done && tx.unbilled_records_of_job(job)? == 0 {
                Ledger::new(tx.ledger()).release_job(job, now_ms).map_err(ledger_error)?;
            }
        }
        debug_assert!(Ledger::new(tx.ledger()).check_balanced().is_ok(), "the ledger must balance after billing");
        Ok(report)
    }

    /// Results nobody fetched (P4.11): warn the client ahead, then delete the job's results
    /// and elements once they have waited `results_retention_ms` after the job completed.
    pub fn purge(&self, tx: &mut dyn Tx, now_ms: u64, fx: &mut Effects) -> Result<u32, StoreError> {
        let retention = self.config.results_retention_ms;
        let warning = self.config.purge_warning_ms.min(retention);
        let mut purged = 0;
        for (job, completed_ms, warned) in
            tx.completed_jobs_with_undelivered_results(now_ms.saturating_sub(retention - warning), 1000)?
        {
            let Some(row) = tx.job(job)? else { continue };
            if completed_ms + retention <= now_ms {
                tracing::info!(%job, "results unclaimed past their retention: purged");
                for assignment in tx.active_assignments_of_job(job)? {
                    self.cancel_placement(tx, assignment.id, &assignment.provider, now_ms, fx)?;
                }
                tx.delete_job(job)?;
                purged += 1;
            } else if !warned {
                let reason =
                    format!("results not fetched are deleted at {} ms since the epoch", completed_ms + retention);
                self.notify(tx, &row, "purge_warning", Some(&reason), now_ms)?;
                tx.set_purge_warned(job)?;
            }
        }
        Ok(purged)
    }
}

fn keys_for(text: &str) -> Result<idlegrid_ledger::IdempotencyKey, CoordinatorError> {
    idlegrid_ledger::IdempotencyKey::new(text).map_err(|e| CoordinatorError::bad_request(format!("reference: {e}")))
}
