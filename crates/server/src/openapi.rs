//! The OpenAPI description of the HTTP API, served at GET /v1/openapi.json. Built from the
//! access table (every endpoint, so the document cannot miss one) and the wire types' schemas
//! (derived from their definitions); what each endpoint takes and answers is declared here.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};

use crate::access::{Callers, RULES};
use idlegrid_protocol::messages::{AccountInfo, MoneyRequestInfo, MoneyRequestKind, MoneyRequestState};
use idlegrid_protocol::ops::{EngineConfigBody, EngineConfigReply, RetentionAction, RetentionReply, RetentionRequest};
use idlegrid_protocol::wire::{
    self, CreditBody, DecisionBody, DisplayBody, DisplayReply, ErrorBody, HealthReply, InstanceStatus, LogBatch,
    LogEntry, LogLine, MoneyRequestBody, OpenSessionRequest, PostReply, RegisterRequest, RegisterResponse,
    RevocationInfo, RevokeReply, RevokeRequest, SessionInfo,
};

/// What an endpoint takes and answers.
struct Doc {
    summary: &'static str,
    /// Query parameters: name, required, integer (else string).
    query: &'static [(&'static str, bool, bool)],
    request: Option<Body>,
    response: Option<Body>,
    /// Status of success.
    status: &'static str,
}

#[derive(Clone, Copy)]
enum Body {
    /// A component schema by name.
    Named(&'static str),
    /// Any JSON object (message batches, statements: described in the message catalogue).
    Object,
    /// A list of a named schema.
    ListOf(&'static str),
    /// Bytes (elements) or text (CSV, Prometheus).
    Bytes(&'static str),
}

const fn doc(summary: &'static str, request: Option<Body>, response: Option<Body>) -> Doc {
    Doc { summary, query: &[], request, response, status: "200" }
}

/// Every endpoint of `access::RULES`, described; `None` for one without a description (a test
/// makes sure there is none).
fn describe(method: &str, path: &str) -> Option<Doc> {
    use Body::*;
    Some(match (method, path) {
        ("GET", "/v1/health") => doc("Liveness and version", None, Some(Named("HealthReply"))),
        ("POST", "/v1/register") => doc(
            "Register a key as a client, provider or operator; over TLS, obtain its certificate",
            Some(Named("RegisterRequest")),
            Some(Named("RegisterResponse")),
        ),
        ("POST", "/v1/sessions") => {
            doc("Open (or resume) a message channel", Some(Named("OpenSessionRequest")), Some(Named("SessionInfo")))
        }
        ("POST", "/v1/sessions/{session}/messages") => {
            doc("Send a batch of sequence-numbered messages", Some(Object), Some(Named("PostReply")))
        }
        ("GET", "/v1/sessions/{session}/messages") => Doc {
            query: &[("after", true, true), ("ack", false, true), ("wait_ms", false, true), ("max", false, true)],
            ..doc("Receive messages after a sequence number (long poll)", None, Some(Object))
        },
        ("POST", "/v1/sessions/{session}/reset") => {
            doc("Re-synchronise a session's positions", None, Some(Named("SessionInfo")))
        }
        ("DELETE", "/v1/sessions/{session}") => Doc { status: "204", ..doc("Close a session", None, None) },
        ("PUT", "/v1/elements/{hash}") => {
            doc("Upload an element (its SHA-256 names it)", Some(Bytes("application/octet-stream")), Some(Object))
        }
        ("GET", "/v1/elements/{hash}") => {
            doc("Download an element (engines: with a ticket)", None, Some(Bytes("application/octet-stream")))
        }
        ("HEAD", "/v1/elements/{hash}") => doc("Whether this party has an element, and its size", None, None),
        ("GET", "/v1/account") => doc("Balance and what may still be spent", None, Some(Named("AccountInfo"))),
        ("GET", "/v1/account/statement") => Doc {
            query: &[
                ("period", false, false),
                ("from_ms", false, true),
                ("to_ms", false, true),
                ("format", false, false),
            ],
            ..doc("Charges (clients) or earnings (providers) by period", None, Some(Object))
        },
        ("POST", "/v1/account/barter") => doc("Spend a provider's earnings as a client", Some(Object), Some(Object)),
        ("POST", "/v1/account/deposits") => doc(
            "Ask to pay money into the account (clients); pending until an operator approves",
            Some(Named("MoneyRequestBody")),
            Some(Named("MoneyRequestInfo")),
        ),
        ("POST", "/v1/account/payouts") => doc(
            "Ask to be paid earnings (providers); reserved until an operator decides",
            Some(Named("MoneyRequestBody")),
            Some(Named("MoneyRequestInfo")),
        ),
        ("GET", "/v1/account/requests") => Doc {
            query: &[("state", false, false)],
            ..doc("The caller's deposit and payout requests", None, Some(ListOf("MoneyRequestInfo")))
        },
        ("GET", "/v1/ops/requests") => Doc {
            query: &[("state", false, false), ("limit", false, true)],
            ..doc("Every party's requests, pending ones by default (operators)", None, Some(ListOf("MoneyRequestInfo")))
        },
        ("POST", "/v1/ops/requests/{request}/approve") => doc(
            "Approve a request: the money moves, once (operators)",
            Some(Named("DecisionBody")),
            Some(Named("MoneyRequestInfo")),
        ),
        ("POST", "/v1/ops/requests/{request}/reject") => doc(
            "Reject a request with a reason: nothing moves (operators)",
            Some(Named("DecisionBody")),
            Some(Named("MoneyRequestInfo")),
        ),
        ("POST", "/v1/ops/credit") => doc(
            "Credit an account with money received (operators)",
            Some(Named("CreditBody")),
            Some(Named("MoneyRequestInfo")),
        ),
        ("POST", "/v1/market/offers") => doc(
            "Register an offer: classified, valued (measured and declared figures marked), the private share never offered",
            Some(Object),
            Some(Object),
        ),
        ("GET", "/v1/market/offers") => doc("The caller's offers with their valuations", None, Some(Object)),
        ("POST", "/v1/market/offers/{offer}") => {
            doc("Replace one of the caller's open offers", Some(Object), Some(Object))
        }
        ("POST", "/v1/market/offers/{offer}/withdraw") => doc("Take an open offer off the market", None, Some(Object)),
        ("POST", "/v1/market/requests") => {
            doc("Keep a request and answer with its ranked candidates", Some(Object), Some(Object))
        }
        ("GET", "/v1/market/requests") => doc("The caller's kept requests", None, Some(Object)),
        ("GET", "/v1/market/requests/{request}/search") => {
            doc("Ranked candidates for a kept request, now", None, Some(Object))
        }
        ("POST", "/v1/market/requests/{request}/withdraw") => {
            doc("Withdraw a kept request: no longer searched, no longer counted", None, Some(Object))
        }
        ("POST", "/v1/market/search") => {
            doc("Ranked candidates for a request, without keeping it", Some(Object), Some(Object))
        }
        ("POST", "/v1/market/negotiations") => doc(
            "Negotiate over an offer as its buyer (automatically to the end, or in person)",
            Some(Object),
            Some(Object),
        ),
        ("GET", "/v1/market/negotiations") => doc("Negotiations the caller takes part in", None, Some(Object)),
        ("GET", "/v1/market/negotiations/{negotiation}") => doc("One negotiation", None, Some(Object)),
        ("POST", "/v1/market/negotiations/{negotiation}/accept") => {
            doc("Accept the other side's last proposal (in person)", None, Some(Object))
        }
        ("POST", "/v1/market/negotiations/{negotiation}/reject") => {
            doc("End a negotiation without agreement (in person)", None, Some(Object))
        }
        ("POST", "/v1/market/negotiations/{negotiation}/counter") => {
            doc("Counter the last proposal with a price (in person)", Some(Object), Some(Object))
        }
        ("GET", "/v1/market/contracts") => doc("Contracts the caller is party to", None, Some(Object)),
        ("GET", "/v1/market/contracts/{contract}") => {
            doc("One contract: its terms (what is signed) and signatures", None, Some(Object))
        }
        ("POST", "/v1/market/contracts/{contract}/sign") => doc(
            "Sign a contract with the party's registered key (Ed25519 over its canonical bytes); with both signatures it starts",
            Some(Object),
            Some(Object),
        ),
        ("POST", "/v1/market/contracts/{contract}/meter") => {
            doc("The seller reports a metering record (numbered; a repeat changes nothing)", Some(Object), Some(Object))
        }
        ("POST", "/v1/market/contracts/{contract}/confirm") => {
            doc("The buyer confirms the contract delivered in full", None, Some(Object))
        }
        ("POST", "/v1/market/contracts/{contract}/fail") => doc(
            "A party reports the contract not delivered: it fails and is settled pro rata",
            Some(Object),
            Some(Object),
        ),
        ("POST", "/v1/market/contracts/{contract}/storage") => doc(
            "The buyer of storage hands its blob (an uploaded element) over to the seller's engine",
            Some(Object),
            Some(Object),
        ),
        ("GET", "/v1/market/contracts/{contract}/storage") => {
            doc("The blob of an active storage contract, for its buyer to download", None, Some(Object))
        }
        ("POST", "/v1/market/contracts/{contract}/file") => {
            doc("The seller attaches the file the contract names (an uploaded element)", Some(Object), Some(Object))
        }
        ("GET", "/v1/market/contracts/{contract}/file") => {
            doc("The file of a paid contract, for its buyer to download", None, Some(Object))
        }
        ("GET", "/v1/market/contracts/{contract}/relay") => {
            doc("The seller's element relay (address and ticket) for the buyer of internet access", None, Some(Object))
        }
        ("POST", "/v1/market/contracts/{contract}/bytes") => {
            doc("A party of internet access reports the bytes it counted (numbered)", Some(Object), Some(Object))
        }
        ("POST", "/v1/market/contracts/{contract}/settle") => {
            doc("Settle a delivered or failed contract through the ledger (once)", None, Some(Object))
        }
        ("POST", "/v1/market/offers/{offer}/platform") => doc(
            "Sell a computing offer to the platform for credits: a contract the platform signed (coordinator with peer)",
            None,
            Some(Object),
        ),
        ("POST", "/v1/market/draws") => doc(
            "Draw sweepstakes winners among the entries the caller sold (seeded, reproducible)",
            Some(Object),
            Some(Object),
        ),
        ("POST", "/v1/market/contracts/{contract}/peripheral") => doc(
            "The buyer uses the peripheral it bought: the input (base64) goes to the seller's engine",
            Some(Object),
            Some(Object),
        ),
        ("GET", "/v1/market/contracts/{contract}/peripheral/{number}") => {
            doc("A peripheral use: waiting, done (with the output, base64) or failed", None, Some(Object))
        }
        ("POST", "/v1/market/contracts/register") => doc(
            "Register a contract both peers signed directly, for execution without commission",
            Some(Object),
            Some(Object),
        ),
        ("GET", "/v1/jobs") => doc("The caller's jobs", None, Some(Object)),
        ("GET", "/v1/jobs/{job}") => doc("One of the caller's jobs", None, Some(Object)),
        ("POST", "/v1/ops/revoke") => {
            doc("Revoke a party (operators)", Some(Named("RevokeRequest")), Some(Named("RevokeReply")))
        }
        ("POST", "/v1/ops/display") => doc(
            "Publish content shown on every engine's status page, replacing the previous content (operators)",
            Some(Named("DisplayBody")),
            Some(Named("DisplayReply")),
        ),
        ("POST", "/v1/ops/retention") => doc(
            "Archive results nobody fetched, or purge their jobs, now (operators)",
            Some(Named("RetentionRequest")),
            Some(Named("RetentionReply")),
        ),
        ("POST", "/v1/ops/engine-config") => doc(
            "Change every engine's server-controlled settings, pushed to them as Config (operators)",
            Some(Named("EngineConfigBody")),
            Some(Named("EngineConfigReply")),
        ),
        ("GET", "/v1/ops/revocations") => doc("Revoked parties (operators)", None, Some(ListOf("RevocationInfo"))),
        ("GET", "/v1/ops/status") => doc("This instance's health (operators)", None, Some(Named("InstanceStatus"))),
        ("POST", "/v1/logs") => {
            doc("Send error and warning lines (engines, clients)", Some(Named("LogBatch")), Some(Object))
        }
        ("GET", "/v1/ops/logs") => Doc {
            query: &[
                ("component", false, false),
                ("party", false, false),
                ("job", false, false),
                ("level", false, false),
                ("since_ms", false, true),
                ("until_ms", false, true),
                ("limit", false, true),
            ],
            ..doc("Log lines, newest first, filtered (operators)", None, Some(ListOf("LogEntry")))
        },
        ("GET", "/metrics") => doc("Prometheus metrics", None, Some(Bytes("text/plain"))),
        ("GET", "/v1/openapi.json") => doc("This document", None, Some(Object)),
        ("POST", "/v1/web/login") => {
            doc("A one-time link that signs the caller in to the web manager", None, Some(Named("LoginLink")))
        }
        _ => return None,
    })
}

fn schema(body: Body) -> (String, RefOr<Schema>) {
    match body {
        Body::Named(name) => ("application/json".into(), RefOr::Ref(Ref::from_schema_name(name))),
        Body::Object => (
            "application/json".into(),
            RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::Object).build())),
        ),
        Body::ListOf(name) => (
            "application/json".into(),
            RefOr::T(Schema::Array(
                utoipa::openapi::schema::ArrayBuilder::new().items(Ref::from_schema_name(name)).build(),
            )),
        ),
        Body::Bytes(content_type) => {
            (content_type.into(), RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::String).build())))
        }
    }
}

fn string_or_integer(integer: bool) -> RefOr<Schema> {
    let kind = if integer { Type::Integer } else { Type::String };
    let mut object = ObjectBuilder::new().schema_type(kind);
    if integer {
        object = object.minimum(Some(0));
    }
    RefOr::T(Schema::Object(object.build()))
}

fn http_method(method: &str) -> HttpMethod {
    match method {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "HEAD" => HttpMethod::Head,
        other => unreachable!("no endpoint uses {other}"),
    }
}

/// The document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for rule in RULES {
        let Some(doc) = describe(rule.method, rule.path) else { continue };
        let mut operation = OperationBuilder::new()
            .summary(Some(doc.summary))
            .operation_id(Some(format!("{} {}", rule.method, rule.path)));
        for segment in rule.path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(string_or_integer(false))),
            );
        }
        for (name, required, integer) in doc.query {
            let required = if *required { Required::True } else { Required::False };
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(required)
                    .schema(Some(string_or_integer(*integer))),
            );
        }
        if let Callers::Roles(roles) = rule.callers {
            for header in [wire::HEADER_ID, wire::HEADER_TIME, wire::HEADER_SIGNATURE] {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(header)
                        .parameter_in(ParameterIn::Header)
                        .required(Required::True)
                        .description(Some("request signature (see the protocol crate's auth module)"))
                        .schema(Some(string_or_integer(false))),
                );
            }
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            operation = operation.description(Some(format!(
                "Callers: {} (signed, and over TLS with the party's certificate).",
                names.join(", ")
            )));
        }
        if let Some(body) = doc.request {
            let (content_type, schema) = schema(body);
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .content(content_type, ContentBuilder::new().schema(Some(schema)).build())
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        let mut success = ResponseBuilder::new().description("success");
        if let Some(body) = doc.response {
            let (content_type, schema) = schema(body);
            success = success.content(content_type, ContentBuilder::new().schema(Some(schema)).build());
        }
        let error = ResponseBuilder::new().description("refused: the body names what is wrong").content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
        );
        let operation = operation.response(doc.status, success).response("4XX", error).build();
        paths.add_path_operation(rule.path, vec![http_method(rule.method)], operation);
    }
    let mut components = ComponentsBuilder::new();
    for (name, schema) in [
        (HealthReply::name(), HealthReply::schema()),
        (RegisterRequest::name(), RegisterRequest::schema()),
        (RegisterResponse::name(), RegisterResponse::schema()),
        (OpenSessionRequest::name(), OpenSessionRequest::schema()),
        (SessionInfo::name(), SessionInfo::schema()),
        (PostReply::name(), PostReply::schema()),
        (ErrorBody::name(), ErrorBody::schema()),
        (RevokeRequest::name(), RevokeRequest::schema()),
        (RevokeReply::name(), RevokeReply::schema()),
        (DisplayBody::name(), DisplayBody::schema()),
        (DisplayReply::name(), DisplayReply::schema()),
        (RetentionRequest::name(), RetentionRequest::schema()),
        (RetentionReply::name(), RetentionReply::schema()),
        (RetentionAction::name(), RetentionAction::schema()),
        (EngineConfigBody::name(), EngineConfigBody::schema()),
        (EngineConfigReply::name(), EngineConfigReply::schema()),
        (RevocationInfo::name(), RevocationInfo::schema()),
        (InstanceStatus::name(), InstanceStatus::schema()),
        (AccountInfo::name(), AccountInfo::schema()),
        (LogBatch::name(), LogBatch::schema()),
        (LogLine::name(), LogLine::schema()),
        (LogEntry::name(), LogEntry::schema()),
        (MoneyRequestBody::name(), MoneyRequestBody::schema()),
        (MoneyRequestInfo::name(), MoneyRequestInfo::schema()),
        (MoneyRequestKind::name(), MoneyRequestKind::schema()),
        (MoneyRequestState::name(), MoneyRequestState::schema()),
        (DecisionBody::name(), DecisionBody::schema()),
        (CreditBody::name(), CreditBody::schema()),
        (crate::web::LoginLink::name(), crate::web::LoginLink::schema()),
    ] {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(InfoBuilder::new().title("Idlegrid").version(env!("CARGO_PKG_VERSION")).build())
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_of_the_access_table_is_described_with_its_schemas() {
        for rule in RULES {
            assert!(describe(rule.method, rule.path).is_some(), "{} {} has no description", rule.method, rule.path);
        }
        let json = serde_json::to_value(document()).unwrap();
        let paths = json["paths"].as_object().unwrap();
        for rule in RULES {
            let operation = &paths[rule.path][rule.method.to_lowercase()];
            assert!(operation.is_object(), "{} {} missing from the document", rule.method, rule.path);
        }
        let schemas = json["components"]["schemas"].as_object().unwrap();
        for name in ["RegisterRequest", "SessionInfo", "ErrorBody", "RevokeRequest", "InstanceStatus", "AccountInfo"] {
            assert!(schemas.contains_key(name), "no schema {name}");
        }
        // Every reference points at a schema that exists.
        let text = json.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling reference to {name}");
        }
        assert_eq!(
            json["paths"]["/v1/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RegisterRequest"
        );
    }
}
