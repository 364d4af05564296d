//! Sign-in links and browser sessions of the web manager, kept in the store so that every
//! server instance on one database accepts the same cookie. A sign-in link carries a random
//! token that works once and only for a short while; opening it starts a session whose random
//! id travels in a cookie, with its own random CSRF token that every form must echo. Sessions
//! end when idle for too long, after a fixed lifetime whatever the activity, or on sign-out.
//!
//! Tokens are stored as their SHA-256: a copy of the table (a backup, a log of it) does not let
//! anyone sign in. The times are passed in; the decisions on them (`WebTimes`) are pure.

use idlegrid_coordinator::Party;
use idlegrid_store::{StoreResult, Tx, WebEntryKind, WebEntryRow};
use sha2::{Digest, Sha256};

/// How long links and sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebTimes {
    /// A sign-in link not opened within this time is dead.
    pub link_ttl_ms: u64,
    /// A session not used for this long ends.
    pub idle_ms: u64,
    /// A session ends this long after it began, used or not.
    pub lifetime_ms: u64,
}

impl Default for WebTimes {
    fn default() -> Self {
        WebTimes { link_ttl_ms: 5 * 60_000, idle_ms: 30 * 60_000, lifetime_ms: 12 * 3_600_000 }
    }
}

impl WebTimes {
    /// When a session begun at `started_ms` and last used at `last_seen_ms` ends.
    pub fn session_end(&self, started_ms: u64, last_seen_ms: u64) -> u64 {
        last_seen_ms.saturating_add(self.idle_ms).min(started_ms.saturating_add(self.lifetime_ms))
    }
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub party: Party,
    /// Every form carries it; a POST without it is refused.
    pub csrf: String,
    pub started_ms: u64,
    pub last_seen_ms: u64,
}

/// Why a link or session does not work; shown to the person as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued, already used or expired: the three are not told apart.
    DeadLink,
    /// No session cookie, or one this server does not know.
    NoSession,
    /// The session ended by itself.
    Expired,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::DeadLink => {
                "this sign-in link does not work: it was used already, has expired, or was never issued. \
                 Ask for a new one with `idlegrid web login`."
            }
            Refusal::NoSession => "you are not signed in. Ask for a sign-in link with `idlegrid web login`.",
            Refusal::Expired => "your session has expired. Ask for a new sign-in link with `idlegrid web login`.",
        }
    }
}

/// The stored key of a token: its SHA-256, hex.
fn key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn session_of(row: WebEntryRow) -> WebSession {
    WebSession {
        party: Party { id: row.party, role: row.role },
        csrf: row.csrf,
        started_ms: row.started_ms,
        last_seen_ms: row.last_seen_ms,
    }
}

/// A new sign-in link's token for `party`, and when it expires. Expired entries are swept.
pub fn issue_link(tx: &mut dyn Tx, times: WebTimes, party: &Party, now_ms: u64) -> StoreResult<(String, u64)> {
    tx.web().delete_expired_web_entries(now_ms)?;
    let token = random_token();
    let expires_ms = now_ms.saturating_add(times.link_ttl_ms);
    tx.web().insert_web_entry(&WebEntryRow {
        key: key(&token),
        kind: WebEntryKind::Link,
        party: party.id.clone(),
        role: party.role,
        csrf: String::new(),
        started_ms: now_ms,
        last_seen_ms: now_ms,
        expires_ms,
    })?;
    Ok((token, expires_ms))
}

/// Open a link: it is spent whatever happens next. Returns the session id (the cookie's value)
/// and the session.
pub fn open_link(
    tx: &mut dyn Tx,
    times: WebTimes,
    token: &str,
    now_ms: u64,
) -> StoreResult<Result<(String, WebSession), Refusal>> {
    let Some(link) = tx.web().take_web_entry(&key(token), WebEntryKind::Link)? else {
        return Ok(Err(Refusal::DeadLink));
    };
    if now_ms >= link.expires_ms {
        return Ok(Err(Refusal::DeadLink));
    }
    let id = random_token();
    let row = WebEntryRow {
        key: key(&id),
        kind: WebEntryKind::Session,
        party: link.party,
        role: link.role,
        csrf: random_token(),
        started_ms: now_ms,
        last_seen_ms: now_ms,
        expires_ms: times.session_end(now_ms, now_ms),
    };
    tx.web().insert_web_entry(&row)?;
    Ok(Ok((id, session_of(row))))
}

/// The session of a cookie's value, marked as used now.
pub fn touch(tx: &mut dyn Tx, times: WebTimes, id: &str, now_ms: u64) -> StoreResult<Result<WebSession, Refusal>> {
    let k = key(id);
    let Some(row) = tx.web().web_entry(&k, WebEntryKind::Session)? else {
        return Ok(Err(Refusal::NoSession));
    };
    // Its end as stored, or by this instance's own times if they are shorter.
    if now_ms >= row.expires_ms || now_ms >= times.session_end(row.started_ms, row.last_seen_ms) {
        tx.web().take_web_entry(&k, WebEntryKind::Session)?;
        return Ok(Err(Refusal::Expired));
    }
    let expires_ms = times.session_end(row.started_ms, now_ms);
    tx.web().touch_web_entry(&k, now_ms, expires_ms)?;
    Ok(Ok(WebSession { last_seen_ms: now_ms, ..session_of(row) }))
}

/// Sign out: the cookie's session ends now.
pub fn end(tx: &mut dyn Tx, id: &str) -> StoreResult<()> {
    tx.web().take_web_entry(&key(id), WebEntryKind::Session)?;
    Ok(())
}

/// End every session and link of a party (revoked, for example).
pub fn end_all_of(tx: &mut dyn Tx, party: &Party) -> StoreResult<()> {
    tx.web().delete_web_entries_of(&party.id)?;
    Ok(())
}

/// Sessions open now, on every instance.
pub fn open_sessions(tx: &mut dyn Tx, now_ms: u64) -> StoreResult<u64> {
    tx.web().count_web_entries(WebEntryKind::Session, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_store::{SqliteStore, Store, StoreError};
    use idlegrid_types::{PartyId, Role};

    fn party() -> Party {
        Party { id: PartyId::from_public_key(&[7u8; 32]), role: Role::Client }
    }

    fn times() -> WebTimes {
        WebTimes { link_ttl_ms: 1_000, idle_ms: 10_000, lifetime_ms: 25_000 }
    }

    fn with<R>(store: &SqliteStore, f: impl FnOnce(&mut dyn Tx) -> StoreResult<R>) -> R {
        store.write(|tx| -> Result<R, StoreError> { f(tx) }).unwrap()
    }

    #[test]
    fn a_session_ends_when_idle_or_at_its_lifetime_whichever_comes_first() {
        let t = times();
        assert_eq!(t.session_end(0, 0), 10_000);
        assert_eq!(t.session_end(0, 9_000), 19_000);
        assert_eq!(t.session_end(0, 20_000), 25_000);
        assert_eq!(t.session_end(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn a_link_signs_in_once_and_its_session_has_its_own_csrf_token() {
        let store = SqliteStore::open_in_memory().unwrap();
        let (token, expires) = with(&store, |tx| issue_link(tx, times(), &party(), 100));
        assert_eq!(expires, 1_100);
        let (id, session) = with(&store, |tx| open_link(tx, times(), &token, 500)).unwrap();
        assert_eq!(session.party, party());
        assert_ne!(session.csrf, id);
        assert_eq!(session.csrf.len(), 64);
        assert_eq!(with(&store, |tx| open_link(tx, times(), &token, 600)), Err(Refusal::DeadLink), "once");
        assert_eq!(with(&store, |tx| touch(tx, times(), &id, 700)).unwrap().csrf, session.csrf);
        assert_eq!(with(&store, |tx| touch(tx, times(), "not a session", 700)), Err(Refusal::NoSession));
        assert_eq!(with(&store, |tx| open_sessions(tx, 700)), 1);
    }

    #[test]
    fn a_link_not_opened_in_time_is_dead_and_unknown_links_are_refused_alike() {
        let store = SqliteStore::open_in_memory().unwrap();
        let (token, _) = with(&store, |tx| issue_link(tx, times(), &party(), 0));
        assert_eq!(with(&store, |tx| open_link(tx, times(), &token, 1_000)), Err(Refusal::DeadLink));
        assert_eq!(with(&store, |tx| open_link(tx, times(), &random_token(), 0)), Err(Refusal::DeadLink));
    }

    #[test]
    fn sessions_end_when_idle_after_their_lifetime_or_on_sign_out() {
        let store = SqliteStore::open_in_memory().unwrap();
        let open = |now| {
            let (token, _) = with(&store, |tx| issue_link(tx, times(), &party(), now));
            with(&store, |tx| open_link(tx, times(), &token, now)).unwrap().0
        };
        let id = open(0);
        // Used every 9 s it stays, until its lifetime is over.
        for now in [9_000, 18_000, 24_999] {
            assert!(with(&store, |tx| touch(tx, times(), &id, now)).is_ok(), "at {now}");
        }
        assert_eq!(with(&store, |tx| touch(tx, times(), &id, 25_000)), Err(Refusal::Expired));
        assert_eq!(with(&store, |tx| touch(tx, times(), &id, 25_001)), Err(Refusal::NoSession), "and forgotten");

        let idle = open(0);
        assert_eq!(with(&store, |tx| touch(tx, times(), &idle, 10_000)), Err(Refusal::Expired));

        let out = open(0);
        with(&store, |tx| end(tx, &out));
        assert_eq!(with(&store, |tx| touch(tx, times(), &out, 1)), Err(Refusal::NoSession));
    }

    #[test]
    fn ending_a_partys_sessions_spares_the_others() {
        let store = SqliteStore::open_in_memory().unwrap();
        let other = Party { id: PartyId::from_public_key(&[8u8; 32]), role: Role::Provider };
        let open = |party: &Party| {
            let (token, _) = with(&store, |tx| issue_link(tx, times(), party, 0));
            with(&store, |tx| open_link(tx, times(), &token, 0)).unwrap().0
        };
        let a = open(&party());
        let b = open(&other);
        with(&store, |tx| end_all_of(tx, &party()));
        assert!(with(&store, |tx| touch(tx, times(), &a, 1)).is_err());
        assert_eq!(with(&store, |tx| touch(tx, times(), &b, 1)).unwrap().party, other);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("", "a"));
    }
}
