"""Binance diff-depth sequencing: is the next depth event contiguous with the book?

Binance's rules (spot and USDⓈ-M futures differ in how contiguity is shown):

- after a REST snapshot with ``lastUpdateId`` = S, drop events with ``u`` <= S;
- the first event kept must straddle S: spot ``U <= S + 1``, futures ``U <= S`` or ``pu == S``;
- afterwards, spot: ``U == previous u + 1``; futures: ``pu == previous u``.

Anything else is a gap: the book no longer mirrors the exchange and must be rebuilt
from a fresh snapshot. A snapshot older than the book has already been (``behind``) is
one a lagging exchange cache served: taking it would move the book back in time. This
module only decides; the caller does the I/O.
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    APPLY = "apply"  # contiguous: apply to the book
    STALE = "stale"  # already contained in the snapshot: skip
    GAP = "gap"  # discontinuity: resynchronise


class DepthSequencer:
    """Tracks the last applied update id of one symbol's diff-depth stream."""

    def __init__(self, *, futures: bool) -> None:
        self.futures = futures
        self.last_update_id: int | None = None
        # The highest update id the book has been at (a snapshot or an applied event); kept
        # across reset(), so that a lagging snapshot cannot take the book back in time.
        self.high_water: int | None = None
        self._awaiting_first = False

    @property
    def synced(self) -> bool:
        return self.last_update_id is not None

    def reset(self) -> None:
        """Forget the position: the next book must come from a snapshot."""
        self.last_update_id = None
        self._awaiting_first = False

    def behind(self, snapshot_id: int) -> bool:
        """Whether a snapshot ending at ``snapshot_id`` is older than the book has already been."""
        return self.high_water is not None and snapshot_id < self.high_water

    def on_snapshot(self, last_update_id: int) -> None:
        """Anchor the sequence at a REST snapshot's ``lastUpdateId``."""
        self.last_update_id = last_update_id
        self._awaiting_first = True
        self._raise_high_water(last_update_id)

    def _raise_high_water(self, update_id: int) -> None:
        if self.high_water is None or update_id > self.high_water:
            self.high_water = update_id

    def check(self, first_id: int, final_id: int, previous_final_id: int | None) -> Verdict:
        """Judge one event (``U``, ``u``, ``pu``) and advance on APPLY.

        Raises ``RuntimeError`` when called before a snapshot anchored the sequence.
        """
        last = self.last_update_id
        if last is None:
            raise RuntimeError("DepthSequencer.check called before on_snapshot")
        if final_id <= last:
            return Verdict.STALE
        if self._awaiting_first:
            contiguous = first_id <= last + 1
            if self.futures:
                contiguous = first_id <= last or previous_final_id == last
        elif self.futures:
            contiguous = previous_final_id == last
        else:
            contiguous = first_id == last + 1
        if not contiguous:
            return Verdict.GAP
        self.last_update_id = final_id
        self._awaiting_first = False
        self._raise_high_water(final_id)
        return Verdict.APPLY
