//! Statements (P7.7) as data, computed from transfers: a client's charges by job and period, a
//! provider's earnings by engine and period, and their CSV export.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{AccountId, LedgerError, Micros, MoneyRequest, Period, Purpose, Transfer};

const MS_PER_DAY: u64 = 86_400_000;

/// How a statement cuts time. Calendar periods are in UTC; a transfer belongs to the period in
/// which it was created (when the money moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementPeriod {
    Day,
    Month,
    /// One period: the statement's whole span.
    Whole,
}

/// What the rows of a statement are grouped by besides period and purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementSubject {
    /// The job charged (clients).
    Job,
    /// The engine paid (providers).
    Engine,
}

impl StatementSubject {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementSubject::Job => "job",
            StatementSubject::Engine => "engine",
        }
    }
}

/// Transfers of one period, subject and purpose, added up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRow {
    pub period: Period,
    /// The job or engine id; empty for transfers without one (deposits, payouts, barter).
    pub subject: String,
    pub purpose: Purpose,
    pub transfers: u64,
    /// From the account's point of view: credits positive (earnings, deposits), debits
    /// negative (charges, payouts).
    pub amount: Micros,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub account: AccountId,
    pub subject: StatementSubject,
    /// The span covered: transfers created in `start_ms..end_ms`.
    pub span: Period,
    pub rows: Vec<StatementRow>,
    /// Sum of debits (charges, payouts), positive.
    pub debits: Micros,
    /// Sum of credits (deposits, earnings), positive.
    pub credits: Micros,
    /// The account's deposit and payout requests made in the span, pending or decided (an
    /// approved one's money is in `rows` too, as a deposit or payout).
    #[serde(default)]
    pub requests: Vec<MoneyRequest>,
}

impl Statement {
    pub fn with_requests(self, requests: Vec<MoneyRequest>) -> Statement {
        Statement { requests, ..self }
    }

    /// Change of the posted balance over the span.
    pub fn net(&self) -> Result<Micros, LedgerError> {
        self.credits.checked_sub(self.debits)
    }
}

/// A client's statement: charges by job and period (and its deposits and barter credits).
pub fn client_statement(
    account: &AccountId,
    transfers: &[Transfer],
    span: Period,
    period: StatementPeriod,
) -> Result<Statement, LedgerError> {
    statement(account, transfers, span, period, StatementSubject::Job)
}

/// A provider's statement: earnings by engine and period (and its payouts and barter).
pub fn provider_statement(
    account: &AccountId,
    transfers: &[Transfer],
    span: Period,
    period: StatementPeriod,
) -> Result<Statement, LedgerError> {
    statement(account, transfers, span, period, StatementSubject::Engine)
}

/// Add up the posted money of `account` in the transfers created within `span`. Transfers that
/// do not touch the account, fall outside the span, or post nothing (reservations, voids) are
/// left out, so the store may pass a superset.
pub fn statement(
    account: &AccountId,
    transfers: &[Transfer],
    span: Period,
    period: StatementPeriod,
    subject: StatementSubject,
) -> Result<Statement, LedgerError> {
    let mut groups: BTreeMap<(Period, String, Purpose), (u64, Micros)> = BTreeMap::new();
    let mut debits = Micros::ZERO;
    let mut credits = Micros::ZERO;
    for transfer in transfers {
        let touches = &transfer.debit == account || &transfer.credit == account;
        let inside = (span.start_ms..span.end_ms).contains(&transfer.created_ms);
        if !touches || !inside || !transfer.posted.is_positive() {
            continue;
        }
        let amount = if &transfer.credit == account {
            credits = credits.checked_add(transfer.posted)?;
            transfer.posted
        } else {
            debits = debits.checked_add(transfer.posted)?;
            transfer.posted.checked_neg()?
        };
        let memo = transfer.memo();
        let subject_id = match subject {
            StatementSubject::Job => memo.job.map(|job| job.to_string()),
            StatementSubject::Engine => memo.engine.as_ref().map(|engine| engine.to_string()),
        };
        let key = (period_of(transfer.created_ms, span, period), subject_id.unwrap_or_default(), transfer.purpose());
        let entry = groups.entry(key).or_insert((0, Micros::ZERO));
        entry.0 += 1;
        entry.1 = entry.1.checked_add(amount)?;
    }
    let rows = groups
        .into_iter()
        .map(|((period, subject, purpose), (transfers, amount))| StatementRow {
            period,
            subject,
            purpose,
            transfers,
            amount,
        })
        .collect();
    Ok(Statement { account: account.clone(), subject, span, rows, debits, credits, requests: Vec::new() })
}

/// The period of `period` kind containing `time_ms`, clipped to the span.
fn period_of(time_ms: u64, span: Period, period: StatementPeriod) -> Period {
    let (start, end) = match period {
        StatementPeriod::Whole => (span.start_ms, span.end_ms),
        StatementPeriod::Day => {
            let start = time_ms - time_ms % MS_PER_DAY;
            (start, start.saturating_add(MS_PER_DAY))
        }
        StatementPeriod::Month => {
            let (year, month, _) = civil_from_days((time_ms / MS_PER_DAY) as i64);
            let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            let day_ms = |y, m| (days_from_civil(y, m, 1).max(0) as u64).saturating_mul(MS_PER_DAY);
            (day_ms(year, month), day_ms(next_year, next_month))
        }
    };
    Period { start_ms: start.max(span.start_ms), end_ms: end.min(span.end_ms) }
}

/// CSV with a header: `period_start,period_end,job|engine,purpose,transfers,amount`, times in
/// ISO 8601 UTC, amounts with six decimals, signed from the account's point of view.
pub fn statement_csv(statement: &Statement) -> String {
    let mut csv = format!("period_start,period_end,{},purpose,transfers,amount\n", statement.subject.as_str());
    for row in &statement.rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{}",
            format_utc(row.period.start_ms),
            format_utc(row.period.end_ms),
            csv_field(&row.subject),
            row.purpose.as_str(),
            row.transfers,
            row.amount
        );
    }
    csv
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

/// `2024-05-01T00:00:00Z` (milliseconds dropped).
pub fn format_utc(time_ms: u64) -> String {
    let days = (time_ms / MS_PER_DAY) as i64;
    let (year, month, day) = civil_from_days(days);
    let seconds = (time_ms % MS_PER_DAY) / 1000;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month as i64 + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_conversions_agree_with_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        // 2024-02-29T12:34:56Z, a leap day.
        assert_eq!(format_utc(1_709_210_096_000), "2024-02-29T12:34:56Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        for days in [0, 59, 60, 365, 10_957, 19_782, 47_482] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let march = period_of(1_709_210_096_000, Period { start_ms: 0, end_ms: u64::MAX }, StatementPeriod::Month);
        assert_eq!(
            (format_utc(march.start_ms), format_utc(march.end_ms)),
            ("2024-02-01T00:00:00Z".into(), "2024-03-01T00:00:00Z".into())
        );
        let december = period_of(1_734_000_000_000, Period { start_ms: 0, end_ms: u64::MAX }, StatementPeriod::Month);
        assert_eq!(format_utc(december.end_ms), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn periods_near_the_end_of_time_do_not_overflow() {
        let span = Period { start_ms: 0, end_ms: u64::MAX };
        for period in [StatementPeriod::Day, StatementPeriod::Month, StatementPeriod::Whole] {
            let found = period_of(u64::MAX - 1, span, period);
            assert!(found.start_ms < u64::MAX && found.end_ms == u64::MAX);
        }
        assert!(format_utc(u64::MAX).starts_with('5'), "{}", format_utc(u64::MAX));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("abc"), "abc");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
