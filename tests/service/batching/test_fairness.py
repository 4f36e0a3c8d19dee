"""The fair order of queued images (FairQueue), without a model: rounds across requests, weights
across callers, priorities, joins, drops, and images in their order."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

from service.batching.context import RequestContext
from service.batching.fairness import FairQueue, Pending
from service.http.callers import Caller, Priority

ALICE = Caller("key:alice", "alice")
BOB = Caller("key:bob", "bob")


class Queue:
    """A FairQueue of requests named by a letter: image k of request "a" is ("a", k)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.fair: FairQueue = FairQueue()
        self.pending: dict[str, list[Pending]] = {}

    def push(self, name: str, n: int, caller: Caller = ALICE, priority: Priority = Priority.NORMAL) -> None:
        ctx = RequestContext(name, time.monotonic() + 60, 60.0, caller=caller, priority=priority)
        pending = [Pending((name, k), ctx, self.loop.create_future(), time.monotonic()) for k in range(n)]
        self.pending[name] = pending
        self.fair.push(pending)

    def give_up(self, name: str) -> None:
        """The request stops waiting (a deadline, a disconnect): its futures are cancelled."""
        for p in self.pending[name]:
            p.future.cancel()

    def take(self, limit: int) -> list[tuple[str, int]]:
        return [p.item for p in self.fair.take(limit, lambda p: not p.future.done())]

    def names(self, limit: int) -> str:
        return "".join(name for name, _ in self.take(limit))


def test_every_queued_request_gets_an_image_per_round() -> None:
    q = Queue()
    q.push("a", 10)
    q.push("b", 1)
    q.push("c", 10)
    assert q.names(3) == "abc"
    # A round (a and c), then the rest to the request with the fewest left (a, the earlier on a tie)
    assert q.names(5) == "acaaa"
    assert len(q.fair) == 13 and q.fair.requests == 2


def test_a_request_that_joins_is_served_within_the_round() -> None:
    q = Queue()
    for name in "abcd":
        q.push(name, 64)
    assert q.names(6) == "abcdaa"
    for name in "wxyz":  # four one-image requests arrive during that pass
        q.push(name, 1)
    # The newcomers first, then the requests served in the latest pass: one image per queued
    # request (8) holds every request, the new ones included.
    assert q.names(8) == "wxyzabcd"


def test_a_stream_of_new_requests_does_not_starve_an_old_one() -> None:
    q = Queue()
    q.push("L", 100)
    served, most_queued = [], 0
    for i in range(60):  # a new one-image request for every image taken: more than can be served
        q.push(f"s{i}", 1)
        most_queued = max(most_queued, q.fair.requests)
        served += [name for name, _ in q.take(1)]
    turns = [i for i, name in enumerate(served) if name == "L"]
    gaps = [b - a for a, b in itertools.pairwise(turns)]
    assert len(turns) >= 8 and max(gaps) <= most_queued  # one image per round of the queued requests


def test_images_of_a_request_leave_in_their_order_across_passes() -> None:
    q = Queue()
    q.push("a", 7)
    q.push("b", 3)
    taken = q.take(4) + q.take(4) + q.take(4)
    assert [k for name, k in taken if name == "a"] == list(range(7))
    assert [k for name, k in taken if name == "b"] == list(range(3))


def test_callers_share_in_proportion_to_their_weights() -> None:
    q = Queue()
    heavy = Caller("key:heavy", "heavy", weight=3.0)
    light = Caller("key:light", "light", weight=1.0)
    for i in range(8):  # both keep plenty queued, in several requests each
        q.push(f"h{i}", 64, heavy)
        q.push(f"l{i}", 64, light)
    counts = Counter(name[0] for name, _ in q.take(400))
    assert counts == {"h": 300, "l": 100}


def test_requests_share_within_a_caller_and_callers_share_across() -> None:
    q = Queue()
    for name in "abc":
        q.push(name, 30, ALICE)
    q.push("z", 30, BOB)  # bob's one request gets as much as alice's three together
    counts = Counter(name for name, _ in q.take(24))
    assert counts == {"z": 12, "a": 10, "b": 1, "c": 1}


def test_an_idle_caller_earns_no_credit() -> None:
    q = Queue()
    q.push("a", 200, ALICE)
    q.take(100)  # alice alone for a while
    q.push("b", 200, BOB)
    assert q.names(10) == "baba" * 2 + "ba"  # bob's turn comes, then they alternate


def test_a_caller_gains_nothing_from_emptying_between_requests() -> None:
    q = Queue()
    q.push("a1", 4, ALICE)
    q.push("b", 100, BOB)
    q.take(8)  # alice's request is done: her flow empties
    q.push("a2", 4, ALICE)  # and comes back at once
    counts = Counter(name[0] for name, _ in q.take(8))
    assert counts == {"a": 4, "b": 4}


def test_a_caller_back_within_a_pass_keeps_its_place_and_later_starts_afresh() -> None:
    heavy = Caller("key:heavy", "heavy", weight=3.0)
    for away, first_images in ((1, "bbbbbbbb"), (2, "bbblbbbl")):
        q = Queue()
        q.push("a", 6, heavy)
        q.push("l", 200, BOB)
        assert sorted(q.names(8)) == sorted("aaaaaall")  # 3:1, and heavy's request is done
        for _ in range(away):
            q.take(8)  # passes while heavy's client fetches its answer
        q.push("b", 100, heavy)
        # Back after one pass: it catches up on the share it missed. After two: the current round.
        assert q.names(8) == first_images


def test_higher_priorities_go_first_and_low_waits() -> None:
    q = Queue()
    q.push("l", 4, ALICE, Priority.LOW)
    q.push("n", 4, ALICE, Priority.NORMAL)
    q.push("h", 2, BOB, Priority.HIGH)
    q.push("H", 2, ALICE, Priority.HIGH)
    assert q.names(4) == "hHhH"
    assert q.names(6) == "nnnnll"


def test_dropped_images_count_neither_towards_the_pass_nor_the_share() -> None:
    q = Queue()
    q.push("a", 3)
    q.push("gone", 5)
    q.push("b", 3)
    q.push("c", 3)
    q.give_up("gone")
    assert q.names(6) == "abcaab"
    assert len(q.fair) == 3  # b's and c's last images; gone's were dropped on the way


def test_purge_drops_given_up_requests_and_first_arrival_skips_them() -> None:
    q = Queue()
    q.push("gone", 5)
    first_live = time.monotonic()
    q.push("a", 2)
    q.give_up("gone")
    assert q.fair.first_arrival() >= first_live
    q.fair.purge()
    assert len(q.fair) == 2 and q.fair.requests == 1
    assert q.names(10) == "aa" and q.fair.first_arrival() is None


def test_pop_all_empties_the_queue() -> None:
    q = Queue()
    q.push("a", 3)
    q.push("b", 2, BOB, Priority.HIGH)
    assert sorted(p.item for p in q.fair.pop_all()) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    assert len(q.fair) == 0 and q.fair.requests == 0 and q.take(5) == []
