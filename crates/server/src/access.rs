//! Who may call what. Every endpoint of the HTTP API has one row here; a signed request whose
//! endpoint has no row is refused (deny by default), so the table cannot fall behind the
//! router without the tests noticing. Finer rules (a client sees only its own jobs, an engine
//! fetches only the elements of tasks it holds) are the coordinator's, on top of these.

use idlegrid_coordinator::CoordinatorError;
use idlegrid_types::Role;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// No signature needed (health, registration).
    Anyone,
    /// A registered, unrevoked party of one of these roles, signing the request (and, over
    /// TLS, presenting the certificate issued to it).
    Roles(&'static [Role]),
}

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    /// Path template; `{name}` matches one segment.
    pub path: &'static str,
    pub callers: Callers,
}

const PARTIES: Callers = Callers::Roles(&[Role::Client, Role::Provider]);
const CLIENTS: Callers = Callers::Roles(&[Role::Client]);
const PROVIDERS: Callers = Callers::Roles(&[Role::Provider]);
const OPERATORS: Callers = Callers::Roles(&[Role::Operator]);
const EVERYONE: Callers = Callers::Roles(&[Role::Client, Role::Provider, Role::Operator]);

const fn rule(method: &'static str, path: &'static str, callers: Callers) -> Rule {
    Rule { method, path, callers }
}

/// Every endpoint and who may call it.
pub const RULES: &[Rule] = &[
    rule("GET", "/v1/health", Callers::Anyone),
    rule("POST", "/v1/register", Callers::Anyone),
    rule("POST", "/v1/sessions", PARTIES),
    rule("POST", "/v1/sessions/{session}/messages", PARTIES),
    rule("GET", "/v1/sessions/{session}/messages", PARTIES),
    rule("POST", "/v1/sessions/{session}/reset", PARTIES),
    rule("DELETE", "/v1/sessions/{session}", PARTIES),
    // Clients upload code and data; engines upload results and checkpoints.
    rule("PUT", "/v1/elements/{hash}", PARTIES),
    // Engines need a ticket for an element of a task they hold (checked by the coordinator).
    rule("GET", "/v1/elements/{hash}", PARTIES),
    rule("HEAD", "/v1/elements/{hash}", PARTIES),
    rule("GET", "/v1/account", PARTIES),
    rule("GET", "/v1/account/statement", PARTIES),
    // Providers spend what their engines earned on their own jobs.
    rule("POST", "/v1/account/barter", PROVIDERS),
    // Money enters as deposits clients request and leaves as payouts providers request; an
    // operator approves each (or credits an account directly).
    rule("POST", "/v1/account/deposits", CLIENTS),
    rule("POST", "/v1/account/payouts", PROVIDERS),
    rule("GET", "/v1/account/requests", PARTIES),
    rule("GET", "/v1/ops/requests", OPERATORS),
    rule("POST", "/v1/ops/requests/{request}/approve", OPERATORS),
    rule("POST", "/v1/ops/requests/{request}/reject", OPERATORS),
    rule("POST", "/v1/ops/credit", OPERATORS),
    // The market: clients and providers both offer, ask, negotiate and sign.
    rule("POST", "/v1/market/offers", PARTIES),
    rule("GET", "/v1/market/offers", PARTIES),
    rule("POST", "/v1/market/offers/{offer}", PARTIES),
    rule("POST", "/v1/market/offers/{offer}/withdraw", PARTIES),
    rule("POST", "/v1/market/offers/{offer}/platform", PARTIES),
    rule("POST", "/v1/market/requests", PARTIES),
    rule("GET", "/v1/market/requests", PARTIES),
    rule("GET", "/v1/market/requests/{request}/search", PARTIES),
    rule("POST", "/v1/market/requests/{request}/withdraw", PARTIES),
    rule("POST", "/v1/market/search", PARTIES),
    rule("POST", "/v1/market/negotiations", PARTIES),
    rule("GET", "/v1/market/negotiations", PARTIES),
    rule("GET", "/v1/market/negotiations/{negotiation}", PARTIES),
    rule("POST", "/v1/market/negotiations/{negotiation}/accept", PARTIES),
    rule("POST", "/v1/market/negotiations/{negotiation}/reject", PARTIES),
    rule("POST", "/v1/market/negotiations/{negotiation}/counter", PARTIES),
    rule("GET", "/v1/market/contracts", PARTIES),
    rule("GET", "/v1/market/contracts/{contract}", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/sign", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/meter", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/confirm", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/fail", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/settle", PARTIES),
    rule("POST", "/v1/market/contracts/register", PARTIES),
    rule("POST", "/v1/market/draws", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/peripheral", PARTIES),
    rule("GET", "/v1/market/contracts/{contract}/peripheral/{number}", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/storage", PARTIES),
    rule("GET", "/v1/market/contracts/{contract}/storage", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/file", PARTIES),
    rule("GET", "/v1/market/contracts/{contract}/file", PARTIES),
    rule("GET", "/v1/market/contracts/{contract}/relay", PARTIES),
    rule("POST", "/v1/market/contracts/{contract}/bytes", PARTIES),
    rule("GET", "/v1/jobs", CLIENTS),
    rule("GET", "/v1/jobs/{job}", CLIENTS),
    rule("POST", "/v1/ops/revoke", OPERATORS),
    rule("GET", "/v1/ops/revocations", OPERATORS),
    // Content shown on every engine's status page.
    rule("POST", "/v1/ops/display", OPERATORS),
    rule("POST", "/v1/ops/retention", OPERATORS),
    rule("POST", "/v1/ops/engine-config", OPERATORS),
    rule("GET", "/v1/ops/status", OPERATORS),
    // Engines and clients send their error logs; operators read them.
    rule("POST", "/v1/logs", PARTIES),
    rule("GET", "/v1/ops/logs", OPERATORS),
    // Prometheus scrapers carry no party certificate.
    rule("GET", "/metrics", Callers::Anyone),
    rule("GET", "/v1/openapi.json", Callers::Anyone),
    // A one-time link that signs the caller in to the web manager.
    rule("POST", "/v1/web/login", EVERYONE),
];

/// Every page of the web manager and who may open it. A browser carries no request signature:
/// a page's caller is the party of its session cookie, and a page without a row here is
/// refused like an API endpoint without one. Opening a sign-in link and the static files
/// need no session.
pub const PAGES: &[Rule] = &[
    rule("GET", "/web/login/{token}", Callers::Anyone),
    rule("GET", "/web/static/{file}", Callers::Anyone),
    rule("GET", "/web", EVERYONE),
    rule("POST", "/web/signout", EVERYONE),
    rule("GET", "/web/account", PARTIES),
    rule("GET", "/web/jobs", CLIENTS),
    rule("GET", "/web/jobs/{job}", CLIENTS),
    rule("GET", "/web/jobs/{job}/stats", CLIENTS),
    rule("POST", "/web/jobs/{job}/stop", CLIENTS),
    rule("POST", "/web/jobs/{job}/resume", CLIENTS),
    rule("POST", "/web/jobs/{job}/remove", CLIENTS),
    rule("POST", "/web/jobs/{job}/tasks/{task}/stop", CLIENTS),
    rule("POST", "/web/jobs/{job}/tasks/{task}/resume", CLIENTS),
    rule("POST", "/web/jobs/{job}/tasks/{task}/remove", CLIENTS),
    rule("GET", "/web/jobs/{job}/results/{result}", CLIENTS),
    rule("GET", "/web/engine", PROVIDERS),
    rule("GET", "/web/market", PARTIES),
    rule("POST", "/web/market/offers", PARTIES),
    rule("POST", "/web/market/offers/{offer}/withdraw", PARTIES),
    rule("POST", "/web/market/offers/{offer}/negotiate", PARTIES),
    rule("POST", "/web/market/search", PARTIES),
    rule("POST", "/web/market/requests/{request}/withdraw", PARTIES),
    rule("POST", "/web/market/negotiations/{negotiation}/accept", PARTIES),
    rule("POST", "/web/market/negotiations/{negotiation}/reject", PARTIES),
    rule("POST", "/web/market/negotiations/{negotiation}/counter", PARTIES),
    rule("GET", "/web/ops", OPERATORS),
    rule("GET", "/web/ops/logs", OPERATORS),
    rule("POST", "/web/ops/requests/{request}/approve", OPERATORS),
    rule("POST", "/web/ops/requests/{request}/reject", OPERATORS),
];

fn matches(template: &str, path: &str) -> bool {
    let mut template = template.split('/');
    let mut path = path.split('/');
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') && t.ends_with('}') => {
                if p.is_empty() {
                    return false;
                }
            }
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

/// The rule of a request, if its endpoint has one.
pub fn rule_for(method: &str, path: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.method == method && matches(rule.path, path))
}

/// The rule of a web page, if it has one.
pub fn page_rule_for(method: &str, path: &str) -> Option<&'static Rule> {
    PAGES.iter().find(|rule| rule.method == method && matches(rule.path, path))
}

/// Whether a party of `role` may call `method path`; the error names who may.
pub fn check(method: &str, path: &str, role: Role) -> Result<(), CoordinatorError> {
    decide(rule_for(method, path), method, path, role)
}

/// Whether a party of `role`, signed in to the web manager, may open `method path`.
pub fn check_page(method: &str, path: &str, role: Role) -> Result<(), CoordinatorError> {
    decide(page_rule_for(method, path), method, path, role)
}

fn decide(rule: Option<&'static Rule>, method: &str, path: &str, role: Role) -> Result<(), CoordinatorError> {
    match rule.map(|rule| rule.callers) {
        Some(Callers::Anyone) => Ok(()),
        Some(Callers::Roles(roles)) if roles.contains(&role) => Ok(()),
        Some(Callers::Roles(roles)) => {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(CoordinatorError::forbidden(format!(
                "a {} may not call {method} {path}; only: {}",
                role.as_str(),
                allowed.join(", ")
            )))
        }
        None => Err(CoordinatorError::forbidden(format!("{method} {path} has no access rule; refused"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments_only() {
        assert!(matches("/v1/jobs/{job}", "/v1/jobs/abc"));
        assert!(!matches("/v1/jobs/{job}", "/v1/jobs/"));
        assert!(!matches("/v1/jobs/{job}", "/v1/jobs/abc/extra"));
        assert!(!matches("/v1/jobs", "/v1/jobs/abc"));
        assert!(matches("/v1/sessions/{session}/reset", "/v1/sessions/s1/reset"));
        assert!(!matches("/v1/sessions/{session}/reset", "/v1/sessions/s1/messages"));
    }

    #[test]
    fn each_role_is_refused_where_it_does_not_belong_and_unknown_endpoints_are_refused() {
        assert!(check("GET", "/v1/jobs", Role::Client).is_ok());
        let error = check("GET", "/v1/jobs", Role::Provider).unwrap_err();
        assert_eq!(error.kind, idlegrid_coordinator::ErrorKind::Forbidden);
        assert!(error.report.message.contains("only: client"), "{}", error.report.message);
        assert!(check("POST", "/v1/ops/revoke", Role::Client).is_err());
        assert!(check("POST", "/v1/ops/revoke", Role::Operator).is_ok());
        assert!(check("POST", "/v1/sessions", Role::Operator).is_err());
        assert!(check("POST", "/v1/account/barter", Role::Client).is_err());
        // Nobody credits their own account: clients and providers only ask.
        for role in [Role::Client, Role::Provider] {
            assert!(check("POST", "/v1/ops/credit", role).is_err());
            assert!(check("POST", "/v1/ops/requests/7/approve", role).is_err());
            assert!(check("GET", "/v1/ops/requests", role).is_err());
        }
        assert!(check("POST", "/v1/account/deposits", Role::Provider).is_err());
        assert!(check("POST", "/v1/account/payouts", Role::Client).is_err());
        assert!(check("POST", "/v1/account/deposits", Role::Operator).is_err());
        assert!(check("DELETE", "/v1/jobs/x", Role::Client).unwrap_err().report.message.contains("no access rule"));
    }

    #[test]
    fn pages_are_refused_to_roles_they_do_not_belong_to_and_unknown_pages_are_refused() {
        assert!(check_page("GET", "/web/jobs/abc", Role::Client).is_ok());
        assert!(check_page("GET", "/web/jobs/abc", Role::Provider).is_err());
        assert!(check_page("POST", "/web/jobs/abc/stop", Role::Operator).is_err());
        assert!(check_page("GET", "/web/ops", Role::Client).is_err());
        assert!(check_page("POST", "/web/ops/requests/3/approve", Role::Provider).is_err());
        assert!(check_page("GET", "/web/engine", Role::Provider).is_ok());
        assert!(check_page("GET", "/web", Role::Operator).is_ok());
        let error = check_page("DELETE", "/web/jobs/abc", Role::Client).unwrap_err();
        assert!(error.report.message.contains("no access rule"), "{}", error.report.message);
        // A page is no API endpoint, nor the reverse.
        assert!(check("GET", "/web/jobs", Role::Client).is_err());
        assert!(check_page("GET", "/v1/jobs", Role::Client).is_err());
    }

    #[test]
    fn no_two_rules_overlap() {
        for table in [RULES, PAGES] {
            no_overlap(table);
        }
    }

    fn no_overlap(table: &[Rule]) {
        for (i, a) in table.iter().enumerate() {
            for b in &table[i + 1..] {
                let same = a.method == b.method && (matches(a.path, b.path) || matches(b.path, a.path));
                assert!(!same, "{} {} and {} {}", a.method, a.path, b.method, b.path);
            }
        }
    }
}
