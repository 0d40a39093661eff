"""Page numbers from query strings, and what a page knows about its neighbours."""

from __future__ import annotations

from dataclasses import dataclass

MAX_PAGE = 100_000


def page_number(value: str | None) -> int:
    """A page number from the query string: 1 when missing or not a number in range."""
    if value is None or not value.isdigit():
        return 1
    return min(max(int(value), 1), MAX_PAGE)


@dataclass(frozen=True, slots=True)
class Paging:
    """Where a page of ``size`` rows is; ``total`` None when it was not counted."""

    page: int
    size: int
    total: int | None
    shown: int
    more: bool = False

    @property
    def has_next(self) -> bool:
        """Another page follows."""
        if self.total is None:
            return self.more
        return self.page * self.size < self.total

    @property
    def first_row(self) -> int:
        """The 1-based number of the first row shown (0 when none)."""
        return (self.page - 1) * self.size + 1 if self.shown else 0

    @property
    def last_row(self) -> int:
        """The number of the last row shown."""
        return (self.page - 1) * self.size + self.shown
