"""The market from Python against a real server: offers read back with their valuation,
requests kept, searched and withdrawn, automatic negotiations ending in a contract or in
failure, a person countering and accepting, and bad input refused with nothing stored."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

import idlegrid
from idlegrid import ApiError
from idlegrid.local import LocalCluster
from idlegrid.market import Market, credits, micros

MEMORY = {"memory_mb": 4096, "read_ns": 80, "write_ns": 90, "duration_s": 3600}


@pytest.fixture
def seller(server: LocalCluster, tmp_path: Path) -> Iterator[Market]:
    with server.client(tmp_path / "seller", poll_wait=5.0) as client:
        yield Market(client.transport)


@pytest.fixture
def buyer(server: LocalCluster, tmp_path: Path) -> Iterator[Market]:
    with server.client(tmp_path / "buyer", poll_wait=5.0) as client:
        yield Market(client.transport)


def test_amounts_convert_exactly() -> None:
    assert micros("2.5") == 2_500_000
    assert micros(3) == 3_000_000
    assert credits(1_250_000) == credits(micros("1.25"))
    with pytest.raises(idlegrid.IdlegridError):
        micros("0.0000001")
    with pytest.raises(idlegrid.IdlegridError):
        micros("lots")


def test_offers_read_back_their_valuation_and_expire(seller: Market) -> None:
    offer = seller.offer("memory", MEMORY, price=micros("3"), private_share=0.5, expires_in_s=7200)
    assert offer.state == "open" and offer.category == "memory"
    assert offer.quantity == 2048, "half is kept private and never offered"
    assert offer.price == micros("3") and offer.value > 0
    assert {f.attribute for f in offer.figures} >= {"memory_mb", "read_ns"}
    assert all(f.provenance == "declared" for f in offer.figures)
    assert offer.expires_ms is not None and offer.expires_ms > offer.created_ms
    assert [o.id for o in seller.offers()] == [offer.id]
    withdrawn = seller.withdraw(offer.id)
    assert withdrawn.state == "withdrawn"
    with pytest.raises(ApiError) as refused:
        seller.withdraw(offer.id)
    assert refused.value.status == 409 and "only an open offer" in refused.value.message


def test_bad_input_is_refused_and_nothing_is_stored(seller: Market, buyer: Market) -> None:
    cases = [
        (lambda: seller.offer("gold", {"amount": 3}), "unknown category 'gold'"),
        (lambda: seller.offer("memory", MEMORY | {"memory_mb": -5}), "must not be negative"),
        (lambda: seller.offer("memory", MEMORY, private_share=1.0), "private share is never offered"),
        (lambda: seller.offer("memory", MEMORY, requirements="other.price >= && 3"), "column"),
        (lambda: seller.offer("memory", MEMORY, requirements="other.price > 1 && " * 600 + "true"), "bytes long"),
        (lambda: buyer.request("gold"), "unknown category 'gold'"),
        (lambda: buyer.request("memory", quantity_min=-1), "quantity_min"),
    ]
    for attempt, message in cases:
        with pytest.raises(ApiError) as refused:
            attempt()
        assert refused.value.status == 400 and message in refused.value.message, refused.value.message
    assert seller.offers() == []
    assert buyer.requests() == []


def test_requests_are_kept_searched_and_withdrawn(seller: Market, buyer: Market) -> None:
    cheap = seller.offer("memory", MEMORY, price=micros("2"))
    dear = seller.offer("memory", MEMORY, price=micros("9"))
    reply = buyer.request("memory", rank="0 - other.price", requirements="other.memory_mb >= 1024", limit=100)
    assert reply.request is not None
    found = [c.offer for c in reply.candidates]
    assert found.index(cheap.id) < found.index(dear.id), "ranked by price, cheapest first"
    again = buyer.search_request(reply.request)
    assert cheap.id in [c.offer for c in again.candidates]
    assert [(r.id, r.state, r.category) for r in buyer.requests()] == [(reply.request, "open", "memory")]
    assert buyer.withdraw_request(reply.request).state == "withdrawn"
    with pytest.raises(ApiError) as refused:
        buyer.search_request(reply.request)
    assert refused.value.status == 409 and "withdrawn" in refused.value.message
    bare = buyer.search("memory", price_max=micros("5"), limit=100)
    assert bare.request is None and dear.id not in [c.offer for c in bare.candidates]


def test_automatic_negotiations_end_in_a_contract_or_in_failure(seller: Market, buyer: Market) -> None:
    flexible = seller.offer("memory", MEMORY, price=micros("10"), reservation=micros("6"), strategy="boulware")
    firm = seller.offer("memory", MEMORY, price=micros("10"), reservation=micros("9.5"))
    agreed = buyer.negotiate(flexible.id, opening=micros("2"), reservation=micros("8"), rounds_max=10)
    assert agreed.state == "agreed" and agreed.contract is not None
    assert agreed.agreed_price is not None and micros("6") <= agreed.agreed_price <= micros("8")
    contract = buyer.contract(agreed.contract)
    assert contract.state == "awaiting_signatures" and contract.buyer_signature is None
    assert agreed.contract in [c.id for c in seller.contracts()]
    failed = buyer.negotiate(firm.id, opening=micros("1"), reservation=micros("5"), rounds_max=6, strategy="linear")
    assert failed.state == "failed" and failed.contract is None and failed.failure == "rounds_exhausted"
    assert [o.state for o in seller.offers() if o.id == firm.id] == ["open"]


def test_a_person_counters_then_accepts_and_a_closed_negotiation_takes_no_counter(
    seller: Market, buyer: Market
) -> None:
    offer = seller.offer("memory", MEMORY, price=micros("8"), person=True)
    opened = buyer.negotiate(offer.id, price=micros("5"))
    assert opened.state == "open" and opened.awaiting == opened.seller
    countered = seller.counter(opened.id, micros("7.5"))
    assert countered.awaiting == countered.buyer
    assert [(p.by, p.price) for p in countered.proposals] == [("buyer", micros("5")), ("seller", micros("7.5"))]
    accepted = buyer.accept(opened.id)
    assert accepted.state == "agreed" and accepted.agreed_price == micros("7.5") and accepted.contract is not None
    with pytest.raises(ApiError) as refused:
        seller.counter(opened.id, micros("1"))
    assert refused.value.status == 409 and "closed" in refused.value.message
    assert buyer.negotiation(opened.id) == accepted
    second = seller.offer("memory", MEMORY, price=micros("8"), person=True)
    rejected = seller.reject(buyer.negotiate(second.id, price=micros("1")).id)
    assert rejected.state == "failed" and rejected.failure == "rejected"
    assert {n.id for n in buyer.negotiations()} >= {opened.id, rejected.id}
