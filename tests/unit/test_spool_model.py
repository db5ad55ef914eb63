"""Model-based test: random appends, leases, acks, releases, dead letters and restarts against a plain model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.spool import Spool, SpoolItem

ITEM_SIZE = len("vehicle-001") + len(b'{"i":000000}')
CAPACITY = 8  # records that fit in max_bytes


class SpoolModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.spool = self._open()
        self.next_id = 0
        self.next_seq = 1
        self.pending: dict[int, str] = {}  # seq -> detection_id
        self.attempts: dict[int, int] = {}  # in memory, as the flusher sees them
        self.stored_attempts: dict[int, int] = {}  # what survives a restart
        self.leased: set[int] = set()
        self.dead: dict[int, str] = {}
        self.evicted = 0
        self.acked = 0

    def _open(self) -> Spool:
        return Spool.open(self.dir / "spool.db", max_bytes=CAPACITY * ITEM_SIZE, commit_interval_ms=0.5)

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(n=st.integers(1, 4))
    def append(self, n: int) -> None:
        items = []
        for _ in range(n):
            items.append(SpoolItem("vehicle-001", b'{"i":%06d}' % self.next_id, f"det-{self.next_id}", 1.0))
            self.next_id += 1
        self.spool.append(items)
        # the model: evict the oldest records not in flight until the new ones fit
        over = len(self.pending) + n - CAPACITY
        for seq in sorted(s for s in self.pending if s not in self.leased):
            if over <= 0:
                break
            del self.pending[seq]
            self.attempts.pop(seq, None)
            self.stored_attempts.pop(seq, None)
            self.evicted += 1
            over -= 1
        for item in items:
            self.pending[self.next_seq] = item.detection_id
            self.next_seq += 1

    @rule(n=st.integers(1, 5))
    def lease(self, n: int) -> None:
        got = self.spool.lease(n)
        want = sorted(s for s in self.pending if s not in self.leased)[:n]
        assert [r.seq for r in got] == want, f"leased {[r.seq for r in got]}, model says {want}"
        for r in got:
            assert r.detection_id == self.pending[r.seq], f"seq {r.seq} carries {r.detection_id}"
            expected = max(self.attempts.get(r.seq, 0), self.stored_attempts.get(r.seq, 0)) + 1
            assert r.attempts == expected, f"seq {r.seq}: attempts {r.attempts}, model {expected}"
            self.attempts[r.seq] = r.attempts
            self.leased.add(r.seq)

    @precondition(lambda self: self.leased)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        seqs = data.draw(st.lists(st.sampled_from(sorted(self.leased)), min_size=1, unique=True))
        self.spool.ack(seqs)
        for s in seqs:
            self.leased.discard(s)
            del self.pending[s]
            self.acked += 1

    @precondition(lambda self: self.leased)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        seqs = data.draw(st.lists(st.sampled_from(sorted(self.leased)), min_size=1, unique=True))
        self.spool.release(seqs)
        for s in seqs:
            self.leased.discard(s)
            self.stored_attempts[s] = self.attempts[s]

    @precondition(lambda self: self.leased)
    @rule(data=st.data())
    def dead_letter(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.leased)))
        self.spool.dead_letter(seq, "poison")
        self.leased.discard(seq)
        self.dead[seq] = self.pending.pop(seq)
        self.stored_attempts[seq] = self.attempts[seq]

    @rule()
    def requeue_dead(self) -> None:
        assert self.spool.requeue_dead() == len(self.dead), "requeue_dead count"
        self.pending.update(self.dead)
        self.dead.clear()

    @rule()
    def purge_dead(self) -> None:
        assert self.spool.purge_dead() == len(self.dead), "purge_dead count"
        for seq in self.dead:
            self.stored_attempts.pop(seq, None)
        self.dead.clear()

    @rule()
    def restart(self) -> None:
        self.spool.close()
        self.spool = self._open()
        self.leased.clear()
        self.attempts = {s: a for s, a in self.stored_attempts.items() if s in self.pending}

    @invariant()
    def counts_match(self) -> None:
        assert self.spool.flush(5), "flush timed out"
        stats = self.spool.stats()
        got = (stats.depth, stats.dead, stats.in_flight, stats.evicted_total, stats.acked_total)
        want = (len(self.pending), len(self.dead), len(self.leased), self.evicted, self.acked)
        assert got == want, f"(depth, dead, in_flight, evicted, acked) = {got}, model {want}"
        assert stats.bytes == len(self.pending) * ITEM_SIZE, f"bytes {stats.bytes}"


TestSpoolModel = SpoolModel.TestCase
TestSpoolModel.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
