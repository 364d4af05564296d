"""The bartering market over the HTTP API: offer resources and read back their valuation, keep
requests and search for ranked candidates, negotiate (automatically or in person), and read
contracts.

Amounts of money are integers of micro-credits on the wire, as the server keeps them;
:func:`micros` turns credits written as text or :class:`~decimal.Decimal` into them without
rounding surprises, and :func:`credits` turns them back.

>>> from idlegrid.market import Market, micros
>>> market = Market(client.transport)
>>> offer = market.offer("memory", {"memory_mb": 4096, "read_ns": 80, "write_ns": 90, "duration_s": 3600},
...                      price=micros("3"), expires_in_s=7200)
>>> reply = market.search("memory", requirements="other.memory_mb >= 1024", rank="0 - other.price")
>>> negotiation = market.negotiate(reply.candidates[0].offer, opening=micros("1"), reservation=micros("4"))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Mapping

from .errors import IdlegridError, ProtocolError
from .transport import Transport

#: How a side concedes in automatic negotiation.
Strategy = Literal["linear", "boulware", "conceder", "tit-for-tat"]

_STRATEGIES: dict[str, dict[str, Any]] = {
    "linear": {"kind": "time_dependent", "beta": 1.0},
    "boulware": {"kind": "time_dependent", "beta": 0.2},
    "conceder": {"kind": "time_dependent", "beta": 5.0},
    "tit-for-tat": {"kind": "tit_for_tat", "min_step": 0.05},
}

#: Micro-credits in one credit.
MICROS_PER_CREDIT = 1_000_000


def micros(amount: str | int | Decimal) -> int:
    """Credits (``"2.5"``, ``Decimal("2.5")`` or a whole ``3``) as micro-credits."""
    try:
        value = Decimal(amount) * MICROS_PER_CREDIT
    except (InvalidOperation, TypeError, ValueError):
        raise IdlegridError(f"{amount!r} is not an amount of credits") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise IdlegridError(f"{amount!r} is not a whole number of micro-credits")
    return int(value)


def credits(amount_micros: int) -> Decimal:
    """Micro-credits as credits."""
    return Decimal(amount_micros) / MICROS_PER_CREDIT


def _strategy(name: Strategy | None) -> dict[str, Any] | None:
    if name is None:
        return None
    try:
        return dict(_STRATEGIES[name])
    except KeyError:
        raise IdlegridError(f"strategy must be one of {', '.join(_STRATEGIES)}, not {name!r}") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{what} should be an integer, the server sent {value!r}")
    return value


@dataclass(frozen=True)
class Figure:
    """One figure of a valuation, and whether the server measured it or the peer declared it."""

    attribute: str
    value: float
    unit: str
    provenance: Literal["measured", "declared"]


@dataclass(frozen=True)
class Offer:
    """An offer as the server keeps it, with its valuation."""

    id: int
    owner: str
    state: str
    category: str
    quantity: float
    unit: str
    private_share: float
    price: int
    value: int
    figures: list[Figure]
    measured: list[str]
    declared: list[str]
    negotiation: Literal["automatic", "person"]
    requirements: str | None
    created_ms: int
    updated_ms: int
    expires_ms: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Offer:
        try:
            valuation = value["valuation"]
            return cls(
                id=_int(value["id"], "offer id"),
                owner=str(value["owner"]),
                state=str(value["state"]),
                category=str(value["category"]),
                quantity=float(value["quantity"]),
                unit=str(value["unit"]),
                private_share=float(value["private_share"]),
                price=_int(value["price"], "price"),
                value=_int(valuation["credits"], "value"),
                figures=[
                    Figure(str(f["attribute"]), float(f["value"]), str(f["unit"]), f["provenance"])
                    for f in valuation["figures"]
                ],
                measured=[str(name) for name in value["measured"]],
                declared=[str(name) for name in value["declared"]],
                negotiation=value["negotiation"],
                requirements=value.get("requirements"),
                created_ms=_int(value["created_ms"], "created_ms"),
                updated_ms=_int(value["updated_ms"], "updated_ms"),
                expires_ms=value.get("expires_ms"),
                raw=value,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProtocolError(f"cannot read an offer from the server: {error!r}") from None


@dataclass(frozen=True)
class Candidate:
    """An offer found for a request, best first."""

    offer: int
    owner: str
    value: int
    price: int
    quantity: float
    distance: int
    rank: float | None

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Candidate:
        rank = value.get("rank")
        return cls(
            offer=_int(value["offer"], "offer"),
            owner=str(value["owner"]),
            value=_int(value["value"], "value"),
            price=_int(value["price"], "price"),
            quantity=float(value["quantity"]),
            distance=_int(value["distance"], "distance"),
            rank=None if rank is None else float(rank),
        )


@dataclass(frozen=True)
class SearchReply:
    """Ranked candidates; ``request`` is the kept request's number (``None`` for a bare search)."""

    request: int | None
    candidates: list[Candidate]
    scanned: int
    matched: int
    complete: bool

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SearchReply:
        try:
            page = value["page"]
            return cls(
                request=value.get("request"),
                candidates=[Candidate.from_json(c) for c in page["candidates"]],
                scanned=int(page["scanned"]),
                matched=int(page["matched"]),
                complete=bool(page["complete"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProtocolError(f"cannot read search results from the server: {error!r}") from None


@dataclass(frozen=True)
class KeptRequest:
    """A request the server keeps to search again (``state``: open or withdrawn)."""

    id: int
    state: str
    category: str
    created_ms: int
    body: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> KeptRequest:
        try:
            return cls(
                id=_int(value["id"], "request id"),
                state=str(value["state"]),
                category=str(value["request"]["category"]),
                created_ms=_int(value["created_ms"], "created_ms"),
                body=value["request"],
            )
        except (KeyError, TypeError) as error:
            raise ProtocolError(f"cannot read a request from the server: {error!r}") from None


@dataclass(frozen=True)
class Proposal:
    by: Literal["seller", "buyer"]
    price: int
    at_ms: int


@dataclass(frozen=True)
class NegotiationInfo:
    """A negotiation: its proposals, where it stands (``state``: open, agreed or failed), whose
    answer it waits for while open, and the contract an agreement became."""

    id: int
    offer: int
    seller: str
    buyer: str
    rounds_max: int
    deadline_ms: int
    proposals: list[Proposal]
    state: Literal["open", "agreed", "failed"]
    agreed_price: int | None
    failure: str | None
    awaiting: str | None
    contract: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> NegotiationInfo:
        try:
            status = value["status"]
            reason = status.get("reason")
            return cls(
                id=_int(value["id"], "negotiation id"),
                offer=_int(value["offer"], "offer"),
                seller=str(value["seller"]),
                buyer=str(value["buyer"]),
                rounds_max=_int(value["rounds_max"], "rounds_max"),
                deadline_ms=_int(value["deadline_ms"], "deadline_ms"),
                proposals=[Proposal(p["by"], _int(p["price"], "price"), _int(p["at_ms"], "at_ms")) for p in value["proposals"]],
                state=status["state"],
                agreed_price=status.get("price"),
                failure=None if reason is None else str(reason.get("kind")),
                awaiting=value.get("awaiting"),
                contract=value.get("contract"),
                raw=value,
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ProtocolError(f"cannot read a negotiation from the server: {error!r}") from None


@dataclass(frozen=True)
class ContractInfo:
    """A contract: its terms as signed (``terms``, the server's JSON), its state
    (awaiting_signatures or signed) and the signatures so far (hex)."""

    id: int
    state: str
    terms: Mapping[str, Any]
    seller_signature: str | None
    buyer_signature: str | None
    signed_ms: int | None

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ContractInfo:
        try:
            return cls(
                id=_int(value["id"], "contract id"),
                state=str(value["state"]),
                terms=value["terms"],
                seller_signature=value.get("seller_signature"),
                buyer_signature=value.get("buyer_signature"),
                signed_ms=value.get("signed_ms"),
            )
        except (KeyError, TypeError) as error:
            raise ProtocolError(f"cannot read a contract from the server: {error!r}") from None


def _request_body(
    category: str,
    quantity_min: float | None,
    quantity_max: float | None,
    value_target: int | None,
    price_max: int | None,
    requirements: str | None,
    rank: str | None,
    attributes: Mapping[str, Any] | None,
    limit: int | None,
    offset: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"category": category}
    optional = {
        "quantity_min": quantity_min,
        "quantity_max": quantity_max,
        "value_target": value_target,
        "price_max": price_max,
        "requirements": requirements,
        "rank": rank,
        "limit": limit,
        "offset": offset,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    if attributes:
        body["attributes"] = dict(attributes)
    return body


class Market:
    """The market's HTTP API for one party (a client, or an engine's identity as provider).

    Every method raises :class:`~idlegrid.ApiError` when the server refuses, with its message:
    an unknown category, a negative or non-numeric quantity, a requirement that does not parse
    (the message gives the column), a private share offered, a bound reached, a counter-offer
    on a closed negotiation.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self._transport.call(method, path, body)

    # ---- offers ----

    def offer(
        self,
        category: str,
        attributes: Mapping[str, float | str],
        *,
        private_share: float = 0.0,
        quantity: float | None = None,
        price: int | None = None,
        requirements: str | None = None,
        rank: str | None = None,
        expires_in_s: float | None = None,
        person: bool = False,
        reservation: int | None = None,
        strategy: Strategy | None = None,
        party_attributes: Mapping[str, Any] | None = None,
        replace: int | None = None,
    ) -> Offer:
        """Offer a resource of ``category`` (computing, memory, storage, peripherals, files,
        internet_access or money) with its ``attributes``; ``private_share`` of it is kept and
        never offered. ``price`` and ``reservation`` are micro-credits (default: the
        valuation, firm). ``person=True`` negotiates in person: each proposal waits for
        :meth:`accept`, :meth:`reject` or :meth:`counter`. ``replace`` updates an open offer."""
        listing: dict[str, Any] = {}
        if quantity is not None:
            listing["quantity"] = quantity
        if price is not None:
            listing["price"] = price
        if requirements is not None:
            listing["requirements"] = requirements
        if rank is not None:
            listing["rank"] = rank
        if expires_in_s is not None:
            if not expires_in_s > 0:
                raise IdlegridError(f"expires_in_s must be positive, not {expires_in_s!r}")
            listing["expires_ms"] = int(time.time() * 1000 + expires_in_s * 1000)
        if person:
            if reservation is not None or strategy is not None:
                raise IdlegridError("an offer negotiated in person takes no reservation or strategy")
            negotiation: dict[str, Any] = {"mode": "person"}
        else:
            negotiation = {"mode": "automatic"}
            if reservation is not None:
                negotiation["reservation"] = reservation
            if strategy is not None:
                negotiation["strategy"] = _strategy(strategy)
        body = {
            "resource": {"category": category, "attributes": dict(attributes), "private_share": private_share},
            "listing": listing,
            "negotiation": negotiation,
            "attributes": dict(party_attributes or {}),
        }
        path = "/v1/market/offers" if replace is None else f"/v1/market/offers/{int(replace)}"
        return Offer.from_json(self._call("POST", path, body))

    def offers(self) -> list[Offer]:
        """This party's offers, in every state."""
        return [Offer.from_json(o) for o in self._call("GET", "/v1/market/offers")]

    def withdraw(self, offer: int) -> Offer:
        """Take one of this party's open offers off the market."""
        return Offer.from_json(self._call("POST", f"/v1/market/offers/{int(offer)}/withdraw"))

    # ---- requests and search ----

    def request(
        self,
        category: str,
        *,
        quantity_min: float | None = None,
        quantity_max: float | None = None,
        value_target: int | None = None,
        price_max: int | None = None,
        requirements: str | None = None,
        rank: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> SearchReply:
        """Keep a request (to search again with :meth:`search_request`) and answer with its
        ranked candidates. ``requirements`` and ``rank`` are over the offers' attributes
        (``other.memory_mb >= 1024``)."""
        body = _request_body(
            category, quantity_min, quantity_max, value_target, price_max, requirements, rank, attributes, limit, offset
        )
        return SearchReply.from_json(self._call("POST", "/v1/market/requests", body))

    def requests(self) -> list[KeptRequest]:
        """This party's kept requests."""
        return [KeptRequest.from_json(r) for r in self._call("GET", "/v1/market/requests")]

    def withdraw_request(self, request: int) -> KeptRequest:
        """Withdraw a kept request: it is no longer searched and no longer counts towards the
        server's bound on open requests."""
        return KeptRequest.from_json(self._call("POST", f"/v1/market/requests/{int(request)}/withdraw"))

    def search(
        self,
        category: str,
        *,
        quantity_min: float | None = None,
        quantity_max: float | None = None,
        value_target: int | None = None,
        price_max: int | None = None,
        requirements: str | None = None,
        rank: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> SearchReply:
        """Ranked candidates for a request, without keeping it."""
        body = _request_body(
            category, quantity_min, quantity_max, value_target, price_max, requirements, rank, attributes, limit, offset
        )
        return SearchReply.from_json(self._call("POST", "/v1/market/search", body))

    def search_request(self, request: int) -> SearchReply:
        """Ranked candidates for one of this party's kept requests, now."""
        return SearchReply.from_json(self._call("GET", f"/v1/market/requests/{int(request)}/search"))

    # ---- negotiation ----

    def negotiate(
        self,
        offer: int,
        *,
        opening: int | None = None,
        reservation: int | None = None,
        strategy: Strategy | None = None,
        price: int | None = None,
        rounds_max: int | None = None,
        deadline_s: int | None = None,
    ) -> NegotiationInfo:
        """Negotiate over ``offer`` as its buyer: automatically from ``opening`` up to
        ``reservation`` (micro-credits), or in person proposing ``price``. Two automatic sides
        negotiate to the end in this call (agreed or failed); otherwise the negotiation waits
        for the side named in ``awaiting``."""
        if price is not None:
            if opening is not None or reservation is not None or strategy is not None:
                raise IdlegridError("negotiate in person with price, or automatically with opening and reservation")
            buyer: dict[str, Any] = {"mode": "person", "price": price}
        elif opening is not None and reservation is not None:
            buyer = {"mode": "automatic", "opening": opening, "reservation": reservation}
            if strategy is not None:
                buyer["strategy"] = _strategy(strategy)
        else:
            raise IdlegridError("negotiate in person with price, or automatically with opening and reservation")
        body: dict[str, Any] = {"offer": int(offer), "buyer": buyer}
        if rounds_max is not None:
            body["rounds_max"] = rounds_max
        if deadline_s is not None:
            body["deadline_secs"] = deadline_s
        return NegotiationInfo.from_json(self._call("POST", "/v1/market/negotiations", body))

    def negotiations(self) -> list[NegotiationInfo]:
        """This party's negotiations, as seller or buyer."""
        return [NegotiationInfo.from_json(n) for n in self._call("GET", "/v1/market/negotiations")]

    def negotiation(self, negotiation: int) -> NegotiationInfo:
        return NegotiationInfo.from_json(self._call("GET", f"/v1/market/negotiations/{int(negotiation)}"))

    def accept(self, negotiation: int) -> NegotiationInfo:
        """Accept the other side's last proposal: the agreement becomes a contract to sign."""
        return NegotiationInfo.from_json(self._call("POST", f"/v1/market/negotiations/{int(negotiation)}/accept"))

    def reject(self, negotiation: int) -> NegotiationInfo:
        """End the negotiation without agreement."""
        return NegotiationInfo.from_json(self._call("POST", f"/v1/market/negotiations/{int(negotiation)}/reject"))

    def counter(self, negotiation: int, price: int) -> NegotiationInfo:
        """Answer the other side's last proposal with ``price`` (micro-credits)."""
        path = f"/v1/market/negotiations/{int(negotiation)}/counter"
        return NegotiationInfo.from_json(self._call("POST", path, {"price": price}))

    # ---- contracts ----

    def contracts(self) -> list[ContractInfo]:
        """This party's contracts."""
        return [ContractInfo.from_json(c) for c in self._call("GET", "/v1/market/contracts")]

    def contract(self, contract: int) -> ContractInfo:
        return ContractInfo.from_json(self._call("GET", f"/v1/market/contracts/{int(contract)}"))
