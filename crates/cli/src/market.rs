//! `idlegrid market`: the bartering market from the command line, as a client or (with
//! `--engine-data`) as the provider of an engine: offer resources and read back their
//! valuation, ask and search, negotiate automatically or in person, sign contracts.

use std::collections::BTreeMap;
use std::path::Path;

use clap::{Args, Subcommand};
use idlegrid_client::{Market, Transport};
use idlegrid_ledger::Micros;
use idlegrid_market::contract::{BarterMode, SignedContract};
use idlegrid_market::expr::AttributeMap;
use idlegrid_market::negotiation::{FailureReason, Status, Strategy};
use idlegrid_market::settlement::Account;
use idlegrid_market::{Expr, Listing, ResourceDeclaration, Value};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::market::{
    BuyerTerms, ContractInfo, ExecutionInfo, MeterBody, NegotiateBody, NegotiationInfo, OfferBody, OfferInfo,
    RequestBody, SearchReply, SellerTerms,
};
use idlegrid_types::{PartyId, Untrusted};

#[derive(Subcommand, Clone)]
pub enum MarketCommand {
    /// Offer a resource: `idlegrid market offer memory memory_mb=4096 read_ns=80 write_ns=90
    /// duration_s=3600`. The server classifies and values it and answers with the valuation,
    /// each figure marked measured (by the server) or declared (by you).
    Offer {
        /// computing, memory, storage, peripherals, files, internet_access or money (or I to VII).
        category: String,
        /// The resource's attributes as name=value.
        #[arg(value_name = "NAME=VALUE")]
        attributes: Vec<String>,
        /// The share of the resource you keep (0 to 1): it is never offered.
        #[arg(long, default_value_t = 0.0)]
        private_share: f64,
        /// How much of the offerable part to list (default: all of it).
        #[arg(long)]
        quantity: Option<f64>,
        /// Asking price in credits (default: the valuation).
        #[arg(long)]
        price: Option<String>,
        /// Who may take the offer, over the requester's attributes (`other.party == "..."`).
        #[arg(long)]
        requirements: Option<String>,
        /// The lowest price accepted by automatic negotiation (default: the asking price).
        #[arg(long)]
        reservation: Option<String>,
        /// How automatic negotiation concedes: linear, boulware, conceder or tit-for-tat.
        #[arg(long)]
        strategy: Option<String>,
        /// Negotiate in person: each proposal waits for your accept, reject or counter.
        #[arg(long)]
        person: bool,
        /// Your attributes requesters may test, as name=value.
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attrs: Vec<String>,
        /// Replace your open offer with this number instead of adding one.
        #[arg(long)]
        update: Option<u64>,
        /// Take the offer off the market after this long: a number and s, m, h or d
        /// (`90m`, `2h`, `7d`; default: until withdrawn).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Your offers, their valuations and states.
    Offers,
    /// Take one of your open offers off the market.
    Withdraw { offer: u64 },
    /// Ask for a resource: the request is kept and its ranked candidates shown.
    Request(RequestArgs),
    /// Your kept requests.
    Requests,
    /// Withdraw one of your kept requests: it is no longer searched again.
    WithdrawRequest { request: u64 },
    /// Ranked candidates for a request (not kept), or for a kept one with --request.
    Search {
        #[command(flatten)]
        args: RequestArgs,
        /// Search again for this kept request.
        #[arg(long)]
        request: Option<u64>,
    },
    /// Negotiate over an offer as its buyer: automatically (--opening and --reservation) to
    /// agreement or failure, or in person (--price), when the seller's answer is awaited.
    Negotiate {
        offer: u64,
        /// Automatic: the first price you propose.
        #[arg(long, requires = "reservation")]
        opening: Option<String>,
        /// Automatic: the highest price you accept.
        #[arg(long, requires = "opening")]
        reservation: Option<String>,
        /// Automatic: linear, boulware, conceder or tit-for-tat.
        #[arg(long)]
        strategy: Option<String>,
        /// In person: the price you propose.
        #[arg(long, conflicts_with_all = ["opening", "reservation"])]
        price: Option<String>,
        /// Most proposals (default 20).
        #[arg(long)]
        rounds: Option<u32>,
        /// Seconds until the negotiation closes as failed (default a day).
        #[arg(long)]
        deadline_secs: Option<u64>,
        /// Sign the contract at once if the negotiation ends in agreement.
        #[arg(long)]
        sign: bool,
    },
    /// Your negotiations, or one of them.
    Negotiations { negotiation: Option<u64> },
    /// Accept the other side's last proposal.
    Accept {
        negotiation: u64,
        /// Sign the contract the agreement makes at once.
        #[arg(long)]
        sign: bool,
    },
    /// End a negotiation without agreement.
    Reject { negotiation: u64 },
    /// Answer the last proposal with your price.
    Counter { negotiation: u64, price: String },
    /// Your contracts, or one of them, with their execution (active, delivered, failed,
    /// settled; what was metered and paid); --sign signs it with your key.
    Contracts {
        contract: Option<u64>,
        #[arg(long, requires = "contract")]
        sign: bool,
    },
    /// As a contract's seller, report use: record number SEQ (from 1), UNITS delivered (the
    /// contract's unit: ms of service, or 1 delivery). Sending a record again changes nothing.
    Meter {
        contract: u64,
        seq: u64,
        units: u64,
        /// When the metered span began and ended (ms since the epoch; default now).
        #[arg(long)]
        from_ms: Option<u64>,
        #[arg(long)]
        to_ms: Option<u64>,
    },
    /// As a contract's buyer, confirm it delivered in full.
    Confirm { contract: u64 },
    /// Report a contract not delivered: it fails now and is settled pro rata.
    Fail {
        contract: u64,
        #[arg(long, default_value = "not delivered")]
        reason: String,
    },
    /// Settle a delivered or failed contract now (the server also does it when its time is over).
    Settle { contract: u64 },
    /// As a provider, sell a computing offer to the platform for credits (it pays what it
    /// values the offer at, at most); --sign signs the contract at once, which starts it.
    SellToPlatform {
        offer: u64,
        #[arg(long)]
        sign: bool,
    },
    /// As a seller of sweepstakes entries (money of kind sweepstakes), draw the winners among
    /// the entries of your contracts under way; the seed is shown so anyone can redo the draw.
    Draw {
        #[arg(long, default_value_t = 1)]
        winners: u32,
        /// Credits you pay each winner (from your account), e.g. `2.5`.
        #[arg(long)]
        prize: Option<String>,
    },
    /// Register a contract both parties signed on their own (a JSON file: the contract and
    /// both signatures); it starts at once, without commission.
    Register { file: std::path::PathBuf },
    /// Peripherals bought: send an input to the seller's engine and get the output.
    Peripheral {
        #[command(subcommand)]
        command: crate::market_peripheral::PeripheralCommand,
    },
    /// Storage bought: hand your blob over, fetch it back.
    #[command(subcommand)]
    Storage(crate::market_data::StorageCommand),
    /// A file sold or bought: attach it (seller), download it once paid (buyer).
    #[command(subcommand)]
    File(crate::market_data::FileCommand),
    /// Internet access bought: fetch elements through the seller's relay.
    #[command(subcommand)]
    Relay(crate::market_data::RelayCommand),
}

#[derive(Args, Clone, Default)]
pub struct RequestArgs {
    /// The category asked for.
    #[arg(default_value = "")]
    category: String,
    #[arg(long)]
    quantity_min: Option<f64>,
    #[arg(long)]
    quantity_max: Option<f64>,
    /// Candidates valued closest to this come first (credits).
    #[arg(long)]
    value_target: Option<String>,
    /// Highest price (credits).
    #[arg(long)]
    price_max: Option<String>,
    /// Over the offers' attributes (`other.memory_mb >= 2048 && other.price < 1`).
    #[arg(long)]
    requirements: Option<String>,
    /// Higher first (`other.memory_mb / other.price`).
    #[arg(long)]
    rank: Option<String>,
    /// Your attributes offers' requirements may test, as name=value.
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attrs: Vec<String>,
    /// Candidates shown (1 to 100).
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

fn price(text: &str, what: &str) -> anyhow::Result<Micros> {
    let amount: Micros = text.trim().parse().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    anyhow::ensure!(!amount.is_negative(), "{what}: {amount} must not be negative");
    Ok(amount)
}

/// A duration such as `90s`, `45m`, `2h` or `7d`, in milliseconds (at most ten years).
fn duration_ms(text: &str, what: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len()));
    let scale = match unit {
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        "" => anyhow::bail!("{what}: '{}' needs a unit: s, m, h or d (e.g. 2h)", Untrusted(text)),
        other => anyhow::bail!("{what}: unknown unit '{}': use s, m, h or d (e.g. 2h)", Untrusted(other)),
    };
    let amount: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{what}: '{}' is not a number and a unit (e.g. 2h)", Untrusted(text)))?;
    let ms = amount * scale;
    anyhow::ensure!(
        (1_000.0..=3650.0 * 86_400_000.0).contains(&ms),
        "{what}: {} must be from one second to ten years",
        Untrusted(text)
    );
    Ok(ms as u64)
}

fn strategy(text: Option<&str>) -> anyhow::Result<Option<Strategy>> {
    Ok(Some(match text {
        None => return Ok(None),
        Some("linear") => Strategy::LINEAR,
        Some("boulware") => Strategy::BOULWARE,
        Some("conceder") => Strategy::CONCEDER,
        Some("tit-for-tat") => Strategy::TIT_FOR_TAT,
        Some(other) => {
            anyhow::bail!("--strategy must be linear, boulware, conceder or tit-for-tat, not '{}'", Untrusted(other))
        }
    }))
}

fn expression(text: Option<&str>, what: &str) -> anyhow::Result<Option<Expr>> {
    text.map(|t| Expr::parse(t).map_err(|e| anyhow::anyhow!("{what}: {e}"))).transpose()
}

/// `name=value` pairs: numbers stay numbers (anything else, `NaN` included, is text, for the
/// server to judge), `true` and `false` are booleans.
fn pairs(items: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut map = BTreeMap::new();
    for item in items {
        let (name, value) =
            item.split_once('=').ok_or_else(|| anyhow::anyhow!("'{}' is not name=value", Untrusted(item)))?;
        let value = match value.parse::<f64>() {
            Ok(number) if number.is_finite() => Value::Number(number),
            _ => match value {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                text => Value::Text(text.to_string()),
            },
        };
        map.insert(name.trim().to_string(), value);
    }
    Ok(map)
}

fn request_body(args: &RequestArgs) -> anyhow::Result<RequestBody> {
    anyhow::ensure!(!args.category.is_empty(), "name the category asked for, like memory");
    Ok(RequestBody {
        category: args.category.clone(),
        quantity_min: args.quantity_min,
        quantity_max: args.quantity_max,
        value_target: args.value_target.as_deref().map(|t| price(t, "--value-target")).transpose()?,
        price_max: args.price_max.as_deref().map(|t| price(t, "--price-max")).transpose()?,
        requirements: expression(args.requirements.as_deref(), "--requirements")?,
        rank: expression(args.rank.as_deref(), "--rank")?,
        attributes: AttributeMap(pairs(&args.attrs)?),
        offset: None,
        limit: Some(args.limit),
    })
}

fn print_offer(offer: &OfferInfo) {
    println!(
        "offer {}  {}  {} {}  value {}  price {}  private share {}  {}  negotiated {}",
        offer.id,
        offer.category,
        offer.quantity,
        offer.unit,
        offer.valuation.credits,
        offer.price,
        offer.private_share,
        offer.state,
        offer.negotiation
    );
    if let Some(expires) = offer.expires_ms {
        println!("  expires {}", idlegrid_ledger::format_utc(expires));
    }
    for figure in &offer.valuation.figures {
        let provenance = match figure.provenance {
            idlegrid_market::Provenance::Measured => "measured",
            idlegrid_market::Provenance::Declared => "declared",
        };
        println!("  {:<20} {:>16} {:<18} {provenance}", figure.attribute, figure.value, figure.unit);
    }
}

fn print_search(reply: &SearchReply) {
    if let Some(request) = reply.request {
        println!("request {request}");
    }
    if reply.page.candidates.is_empty() {
        println!("no candidates ({} offers looked at)", reply.page.scanned);
        return;
    }
    println!(
        "{:<5} {:<8} {:<34} {:>14} {:>16} {:>16} {:>10}",
        "#", "offer", "owner", "quantity", "value", "price", "rank"
    );
    for (n, candidate) in reply.page.candidates.iter().enumerate() {
        let rank = candidate.rank.map_or("-".to_string(), |r| format!("{r}"));
        println!(
            "{:<5} {:<8} {:<34} {:>14} {:>16} {:>16} {:>10}",
            n + 1,
            candidate.offer.0,
            candidate.owner.to_string(),
            candidate.quantity,
            candidate.value.to_string(),
            candidate.price.to_string(),
            rank
        );
    }
}

fn who(party: &PartyId, me: &PartyId) -> String {
    if party == me { format!("{party} (you)") } else { party.to_string() }
}

fn print_negotiation(negotiation: &NegotiationInfo, me: &PartyId) {
    let view = &negotiation.view;
    let status = match &view.status {
        Status::Open => match &negotiation.awaiting {
            Some(party) => format!("open, waiting for {}", who(party, me)),
            None => "open".to_string(),
        },
        Status::Agreed { price, .. } => format!("agreed at {price}"),
        Status::Failed { reason, .. } => match reason {
            FailureReason::Rejected { by } => format!("failed: rejected by the {by:?}").to_lowercase(),
            FailureReason::RoundsExhausted => "failed: no agreement within the rounds".to_string(),
            FailureReason::DeadlinePassed => "failed: the deadline passed".to_string(),
        },
    };
    println!(
        "negotiation {} over offer {}: {status} ({} of {} proposals)",
        view.id.0,
        view.offer,
        view.proposals.len(),
        view.rounds_max
    );
    for proposal in &view.proposals {
        println!("  {:<7} proposes {}", format!("{:?}", proposal.by).to_lowercase(), proposal.price);
    }
    if let Some(contract) = negotiation.contract {
        println!("contract {contract}: sign it with `idlegrid market contracts {contract} --sign`");
    }
}

pub(crate) fn print_contract(contract: &ContractInfo, me: &PartyId) {
    let terms = &contract.terms;
    let signed = |s: &Option<String>| if s.is_some() { "signed" } else { "not signed" };
    println!(
        "contract {}  {}  price {}  commission {}  seller {} ({})  buyer {} ({})",
        contract.id,
        contract.state,
        terms.price,
        terms.commission,
        who(&terms.seller.party, me),
        signed(&contract.seller_signature),
        who(&terms.buyer.party, me),
        signed(&contract.buyer_signature)
    );
    if let Some(offer) = terms.offer {
        println!(
            "  offer {offer}, from {} for {} s",
            idlegrid_ledger::format_utc(terms.starts_ms),
            terms.duration_ms / 1000
        );
    }
    if let Some(info) = &contract.execution {
        print_execution(info, terms);
    }
}

fn print_execution(info: &ExecutionInfo, terms: &idlegrid_market::Contract) {
    let execution = &info.execution;
    let mode = match terms.mode {
        BarterMode::CoordinatorWithPeer => "coordinator with peer",
        BarterMode::PeerWithPeerCoordinated => "peer with peer through the coordinator",
        BarterMode::PeerWithPeerDirect => "peer with peer, registered directly",
    };
    println!(
        "  execution {}  ({mode})  metered {} of {} {} in {} records ({} repeated)",
        execution.state.name(),
        execution.units_metered(),
        execution.units_contracted,
        execution.unit,
        execution.records.len(),
        execution.repeated
    );
    if let Some(reason) = &execution.failure {
        println!("  failed: {}", Untrusted(reason));
    }
    if let Some(data) = &info.data {
        crate::market_data::print_data(data);
    }
    if let Some(draw) = &info.draw {
        let winners: Vec<String> = draw.winners.iter().map(ToString::to_string).collect();
        println!("  sweepstakes drawn with seed {}: winners {}", draw.seed, winners.join(", "));
        if draw.prize > Micros::ZERO {
            println!("  prize {} paid to each winner", draw.prize);
        }
    }
    let held: i64 = info.escrow.iter().map(|t| t.amount.as_i64()).sum();
    println!("  escrow {}", Micros::new(held));
    if let Some(fraction) = execution.fraction {
        println!("  settled {}/{} delivered", fraction.numerator, fraction.denominator);
    }
    for transfer in &info.settlement {
        let to = match &transfer.to {
            Account::Party(party) if *party == terms.seller.party => "seller".to_string(),
            Account::Party(party) if *party == terms.buyer.party => "buyer (refund)".to_string(),
            Account::Party(party) => party.to_string(),
            Account::Platform => "platform (commission)".to_string(),
            Account::Escrow(id) => format!("escrow {id}"),
        };
        println!("  paid {} to {to}", transfer.amount);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Register the party that trades: a provider with its engine's identity, a client with its own.
async fn trader(
    server: idlegrid_client::Endpoint,
    home: &Path,
    engine_data: Option<&Path>,
) -> anyhow::Result<Transport> {
    let identity = match engine_data {
        Some(dir) => Identity::load_or_create(&dir.join("identity.key"))?,
        None => Identity::load_or_create(&home.join("client.key"))?,
    };
    let transport = Transport::new(&server, identity)?;
    let role = if engine_data.is_some() { idlegrid_types::Role::Provider } else { idlegrid_types::Role::Client };
    let name = std::env::var("USER").unwrap_or_else(|_| "client".into());
    transport.register(role, &name).await.map_err(|e| anyhow::anyhow!("cannot register with the server: {e}"))?;
    Ok(transport)
}

/// How a seller negotiates: in person, or automatically down to a reservation price.
fn seller_terms(person: bool, reservation: Option<&str>, concession: Option<&str>) -> anyhow::Result<SellerTerms> {
    if person {
        anyhow::ensure!(
            reservation.is_none() && concession.is_none(),
            "--person negotiates in person: --reservation and --strategy are for automatic negotiation"
        );
        return Ok(SellerTerms::Person);
    }
    Ok(SellerTerms::Automatic {
        reservation: reservation.map(|t| price(t, "--reservation")).transpose()?,
        strategy: strategy(concession)?,
    })
}

/// How a buyer negotiates: automatically between an opening and a reservation price, or in
/// person with a proposal.
fn buyer_terms(
    opening: Option<String>,
    reservation: Option<String>,
    proposal: Option<String>,
    concession: Option<&str>,
) -> anyhow::Result<BuyerTerms> {
    Ok(match (opening, reservation, proposal) {
        (Some(opening), Some(reservation), None) => BuyerTerms::Automatic {
            opening: price(&opening, "--opening")?,
            reservation: price(&reservation, "--reservation")?,
            strategy: strategy(concession)?,
        },
        (None, None, Some(proposal)) => BuyerTerms::Person { price: price(&proposal, "--price")? },
        _ => anyhow::bail!("negotiate automatically with --opening and --reservation, or in person with --price"),
    })
}

/// When an offer given `--expires-in` expires (milliseconds since the epoch).
fn expiry(expires_in: Option<&str>) -> anyhow::Result<Option<u64>> {
    let Some(text) = expires_in else { return Ok(None) };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64);
    Ok(Some(now.unwrap_or(0).saturating_add(duration_ms(text, "--expires-in")?)))
}

/// Print each item, or that there is none.
fn print_all<T>(items: &[T], none: &str, print: impl Fn(&T)) {
    if items.is_empty() {
        println!("{none}");
    }
    items.iter().for_each(print);
}

pub async fn run(
    server: idlegrid_client::Endpoint,
    home: &Path,
    engine_data: Option<&Path>,
    command: MarketCommand,
) -> anyhow::Result<()> {
    let transport = trader(server, home, engine_data).await?;
    let market = Market::new(&transport);
    let me = transport.identity().id().clone();
    match command {
        MarketCommand::Offer {
            category,
            attributes,
            private_share,
            quantity,
            price: asking,
            requirements,
            reservation,
            strategy: concession,
            person,
            attrs,
            update,
            expires_in,
        } => {
            let expires_ms = expiry(expires_in.as_deref())?;
            let negotiation = seller_terms(person, reservation.as_deref(), concession.as_deref())?;
            let body = OfferBody {
                resource: ResourceDeclaration { category, attributes: pairs(&attributes)?, private_share },
                listing: Listing {
                    quantity,
                    price: asking.as_deref().map(|t| price(t, "--price")).transpose()?,
                    requirements: expression(requirements.as_deref(), "--requirements")?,
                    rank: None,
                    expires_ms,
                },
                negotiation,
                attributes: AttributeMap(pairs(&attrs)?),
            };
            let info = match update {
                Some(id) => market.update_offer(id, &body).await?,
                None => market.offer(&body).await?,
            };
            print_offer(&info);
        }
        MarketCommand::Offers => print_all(&market.offers().await?, "no offers", print_offer),
        MarketCommand::Withdraw { offer } => print_offer(&market.withdraw(offer).await?),
        MarketCommand::Request(args) => print_search(&market.request(&request_body(&args)?).await?),
        MarketCommand::Requests => print_all(&market.requests().await?, "no requests", print_request),
        MarketCommand::WithdrawRequest { request } => {
            let kept = market.withdraw_request(request).await?;
            println!("request {}  {}  {}", kept.id, Untrusted(&kept.request.category), kept.state);
        }
        MarketCommand::Search { args, request } => {
            let reply = match request {
                Some(id) => market.search_request(id).await?,
                None => market.search(&request_body(&args)?).await?,
            };
            print_search(&reply);
        }
        MarketCommand::Negotiate {
            offer,
            opening,
            reservation,
            strategy: concession,
            price: proposal,
            rounds,
            deadline_secs,
            sign,
        } => {
            let buyer = buyer_terms(opening, reservation, proposal, concession.as_deref())?;
            let body = NegotiateBody { offer, buyer, rounds_max: rounds, deadline_secs };
            let negotiation = market.negotiate(&body).await?;
            print_negotiation(&negotiation, &me);
            if let (true, Some(contract)) = (sign, negotiation.contract) {
                print_contract(&market.sign(contract).await?, &me);
            }
        }
        MarketCommand::Negotiations { negotiation } => match negotiation {
            Some(id) => print_negotiation(&market.negotiation(id).await?, &me),
            None => print_all(&market.negotiations().await?, "no negotiations", |n| print_negotiation(n, &me)),
        },
        MarketCommand::Accept { negotiation, sign } => {
            let negotiation = market.accept(negotiation).await?;
            print_negotiation(&negotiation, &me);
            if let (true, Some(contract)) = (sign, negotiation.contract) {
                print_contract(&market.sign(contract).await?, &me);
            }
        }
        MarketCommand::Reject { negotiation } => print_negotiation(&market.reject(negotiation).await?, &me),
        MarketCommand::Counter { negotiation, price: proposal } => {
            print_negotiation(&market.counter(negotiation, price(&proposal, "price")?).await?, &me)
        }
        MarketCommand::Contracts { contract, sign } => match (contract, sign) {
            (Some(id), true) => print_contract(&market.sign(id).await?, &me),
            (Some(id), false) => print_contract(&market.contract(id).await?, &me),
            (None, _) => print_all(&market.contracts().await?, "no contracts", |c| print_contract(c, &me)),
        },
        other => run_execution(&market, &me, other).await?,
    }
    Ok(())
}

/// The commands that carry contracts out: metering, confirmation, failure, settlement, sales
/// to the platform, sweepstakes draws and direct registration.
async fn run_execution(market: &Market<'_>, me: &PartyId, command: MarketCommand) -> anyhow::Result<()> {
    let me = me.clone();
    match command {
        MarketCommand::Meter { contract, seq, units, from_ms, to_ms } => {
            let to_ms = to_ms.unwrap_or_else(now_ms);
            let body = MeterBody { seq, from_ms: from_ms.unwrap_or(to_ms), to_ms, units };
            print_contract(&market.meter(contract, &body).await?, &me)
        }
        MarketCommand::Confirm { contract } => print_contract(&market.confirm(contract).await?, &me),
        MarketCommand::Fail { contract, reason } => print_contract(&market.fail(contract, &reason).await?, &me),
        MarketCommand::Settle { contract } => print_contract(&market.settle(contract).await?, &me),
        MarketCommand::SellToPlatform { offer, sign } => {
            let contract = market.sell_to_platform(offer).await?;
            let contract = if sign { market.sign(contract.id).await? } else { contract };
            print_contract(&contract, &me)
        }
        MarketCommand::Draw { winners, prize } => {
            let prize = prize.as_deref().map(|p| price(p, "--prize")).transpose()?.unwrap_or(Micros::ZERO);
            let drawn = market.draw(winners, prize).await?;
            println!("draw seed {} over contracts {:?}", drawn.seed, drawn.contracts);
            for (party, count) in &drawn.entries {
                println!("  entries {count} {}", who(party, &me));
            }
            for party in &drawn.winners {
                println!("  winner {}", who(party, &me));
            }
            if drawn.prize > Micros::ZERO {
                println!("  prize {} paid to each winner", drawn.prize);
            }
        }
        MarketCommand::Register { file } => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let signed: SignedContract = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is no signed contract: {e}", file.display()))?;
            print_contract(&market.register(&signed).await?, &me)
        }
        MarketCommand::Peripheral { command } => crate::market_peripheral::run(market, command).await?,
        MarketCommand::Storage(command) => crate::market_data::run_storage(market, &me, command).await?,
        MarketCommand::File(command) => crate::market_data::run_file(market, &me, command).await?,
        MarketCommand::Relay(command) => crate::market_data::run_relay(market, command).await?,
        _ => unreachable!("run handles the other commands"),
    }
    Ok(())
}

fn print_request(kept: &idlegrid_protocol::market::RequestInfo) {
    let mut line = format!(
        "request {}  {}  {}  {}",
        kept.id,
        Untrusted(&kept.request.category),
        kept.state,
        idlegrid_ledger::format_utc(kept.created_ms)
    );
    if let Some(requirements) = &kept.request.requirements {
        line.push_str(&format!("  requires {}", Untrusted(&requirements.to_string())));
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::duration_ms;

    #[test]
    fn durations_take_a_unit_and_stay_in_bounds() {
        assert_eq!(duration_ms("90s", "--expires-in").unwrap(), 90_000);
        assert_eq!(duration_ms("2h", "--expires-in").unwrap(), 7_200_000);
        assert_eq!(duration_ms("1.5d", "--expires-in").unwrap(), 129_600_000);
        for (text, says) in [
            ("2", "needs a unit"),
            ("2w", "unknown unit 'w'"),
            ("h", "not a number"),
            ("0.5s", "from one second to ten years"),
            ("4000d", "from one second to ten years"),
        ] {
            let error = duration_ms(text, "--expires-in").unwrap_err().to_string();
            assert!(error.starts_with("--expires-in") && error.contains(says), "{text}: {error}");
        }
    }
}
