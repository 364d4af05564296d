//! Sign-in links and browser sessions of the web manager, as pure bookkeeping with the time
//! passed in. A sign-in link carries a random token that works once and only for a short
//! while; opening it starts a session whose random id travels in a cookie, with its own random
//! CSRF token that every form must echo. Sessions end when idle for too long, after a fixed
//! lifetime whatever the activity, or on sign-out.
//!
//! Tokens are kept as their SHA-256: a copy of this table (a memory dump, a log of it) does not
//! let anyone sign in. The table lives in the instance that issued the link.

use std::collections::HashMap;

use idlegrid_coordinator::Party;
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

/// At most this many links waiting and sessions open at once; the oldest go first beyond.
const ENTRIES_MAX: usize = 10_000;

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

struct Link {
    party: Party,
    expires_ms: u64,
}

/// Links waiting to be opened and open sessions, keyed by the SHA-256 of their token.
#[derive(Default)]
pub struct Sessions {
    times: WebTimes,
    links: HashMap<[u8; 32], Link>,
    sessions: HashMap<[u8; 32], WebSession>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
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

impl Sessions {
    pub fn new(times: WebTimes) -> Sessions {
        Sessions { times, ..Default::default() }
    }

    pub fn times(&self) -> WebTimes {
        self.times
    }

    /// A new sign-in link's token for `party`, and when it expires.
    pub fn issue_link(&mut self, party: Party, now_ms: u64) -> (String, u64) {
        self.forget_expired(now_ms);
        if self.links.len() >= ENTRIES_MAX {
            let oldest = self.links.iter().min_by_key(|(_, l)| l.expires_ms).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.links.remove(&oldest);
            }
        }
        let token = random_token();
        let expires_ms = now_ms.saturating_add(self.times.link_ttl_ms);
        self.links.insert(key(&token), Link { party, expires_ms });
        (token, expires_ms)
    }

    /// Open a link: it is spent whatever happens next. Returns the session id (the cookie's
    /// value) and the session.
    pub fn open_link(&mut self, token: &str, now_ms: u64) -> Result<(String, WebSession), Refusal> {
        let link = self.links.remove(&key(token)).ok_or(Refusal::DeadLink)?;
        if now_ms >= link.expires_ms {
            return Err(Refusal::DeadLink);
        }
        self.forget_expired(now_ms);
        if self.sessions.len() >= ENTRIES_MAX {
            let oldest = self.sessions.iter().min_by_key(|(_, s)| s.last_seen_ms).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        let id = random_token();
        let session = WebSession { party: link.party, csrf: random_token(), started_ms: now_ms, last_seen_ms: now_ms };
        self.sessions.insert(key(&id), session.clone());
        Ok((id, session))
    }

    /// The session of a cookie's value, marked as used now.
    pub fn touch(&mut self, id: &str, now_ms: u64) -> Result<WebSession, Refusal> {
        let k = key(id);
        let session = self.sessions.get_mut(&k).ok_or(Refusal::NoSession)?;
        if self.times.expired(session, now_ms) {
            self.sessions.remove(&k);
            return Err(Refusal::Expired);
        }
        session.last_seen_ms = now_ms;
        Ok(session.clone())
    }

    /// Sign out: the cookie's session ends now.
    pub fn end(&mut self, id: &str) {
        self.sessions.remove(&key(id));
    }

    /// End every session of a party (revoked, for example).
    pub fn end_all_of(&mut self, party: &Party) {
        self.sessions.retain(|_, s| s.party != *party);
        self.links.retain(|_, l| l.party != *party);
    }

    pub fn forget_expired(&mut self, now_ms: u64) {
        let times = self.times;
        self.links.retain(|_, l| now_ms < l.expires_ms);
        self.sessions.retain(|_, s| !times.expired(s, now_ms));
    }

    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }
}

impl WebTimes {
    fn expired(&self, session: &WebSession, now_ms: u64) -> bool {
        now_ms >= session.last_seen_ms.saturating_add(self.idle_ms)
            || now_ms >= session.started_ms.saturating_add(self.lifetime_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_types::{PartyId, Role};

    fn party() -> Party {
        Party { id: PartyId::from_public_key(&[7u8; 32]), role: Role::Client }
    }

    fn times() -> WebTimes {
        WebTimes { link_ttl_ms: 1_000, idle_ms: 10_000, lifetime_ms: 25_000 }
    }

    #[test]
    fn a_link_signs_in_once_and_its_session_has_its_own_csrf_token() {
        let mut sessions = Sessions::new(times());
        let (token, expires) = sessions.issue_link(party(), 100);
        assert_eq!(expires, 1_100);
        let (id, session) = sessions.open_link(&token, 500).unwrap();
        assert_eq!(session.party, party());
        assert_ne!(session.csrf, id);
        assert_eq!(session.csrf.len(), 64);
        assert_eq!(sessions.open_link(&token, 600), Err(Refusal::DeadLink), "a link works once");
        assert_eq!(sessions.touch(&id, 700).unwrap().csrf, session.csrf);
        assert_eq!(sessions.touch("not a session", 700), Err(Refusal::NoSession));
    }

    #[test]
    fn a_link_not_opened_in_time_is_dead_and_unknown_links_are_refused_alike() {
        let mut sessions = Sessions::new(times());
        let (token, _) = sessions.issue_link(party(), 0);
        assert_eq!(sessions.open_link(&token, 1_000), Err(Refusal::DeadLink));
        assert_eq!(sessions.open_link(&random_token(), 0), Err(Refusal::DeadLink));
    }

    #[test]
    fn sessions_end_when_idle_after_their_lifetime_or_on_sign_out() {
        let mut sessions = Sessions::new(times());
        let (token, _) = sessions.issue_link(party(), 0);
        let (id, _) = sessions.open_link(&token, 0).unwrap();
        // Used every 9 s it stays, until its lifetime is over.
        for now in [9_000, 18_000, 24_999] {
            assert!(sessions.touch(&id, now).is_ok(), "at {now}");
        }
        assert_eq!(sessions.touch(&id, 25_000), Err(Refusal::Expired));
        assert_eq!(sessions.touch(&id, 25_001), Err(Refusal::NoSession), "and it is forgotten");

        let (token, _) = sessions.issue_link(party(), 0);
        let (idle, _) = sessions.open_link(&token, 0).unwrap();
        assert_eq!(sessions.touch(&idle, 10_000), Err(Refusal::Expired));

        let (token, _) = sessions.issue_link(party(), 0);
        let (out, _) = sessions.open_link(&token, 0).unwrap();
        sessions.end(&out);
        assert_eq!(sessions.touch(&out, 1), Err(Refusal::NoSession));
    }

    #[test]
    fn ending_a_partys_sessions_spares_the_others() {
        let mut sessions = Sessions::new(times());
        let other = Party { id: PartyId::from_public_key(&[8u8; 32]), role: Role::Provider };
        let (a, _) = sessions.issue_link(party(), 0);
        let (b, _) = sessions.issue_link(other.clone(), 0);
        let (a, _) = sessions.open_link(&a, 0).unwrap();
        let (b, _) = sessions.open_link(&b, 0).unwrap();
        sessions.end_all_of(&party());
        assert!(sessions.touch(&a, 1).is_err());
        assert_eq!(sessions.touch(&b, 1).unwrap().party, other);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("", "a"));
    }
}
