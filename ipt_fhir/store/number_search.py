"""The prefixes of number and quantity search as comparisons of two ranges (search.html#prefix).

A target is a closed range [low, high] (search_tables: the `value` and `high` columns): a number or
Quantity n is [n, n]; a Range is [low, high], its ends inclusive and exact (datatypes.html#Range), a
missing end unbounded (NUMBER_MIN / NUMBER_MAX). The search value v has the implicit range [lo, hi) of
its precision (`100` is [99.5, 100.5), parser.parse_number).

| prefix | target [low, high] matches when                                         | as SQL                         |
|--------|--------------------------------------------------------------------------|--------------------------------|
| eq     | [lo, hi) fully contains it                                               | low >= lo and high < hi        |
| ne     | it does not                                                              | low < lo or high >= hi         |
| gt, lt | it meets the range above (below) v: "greater than exactly 100"           | high > v; low < v              |
| ge, le | the same with v itself included                                          | high >= v; low <= v            |
| sa, eb | it lies wholly above (below) [lo, hi), not overlapping it                | low >= hi; high < lo           |
| ap     | it meets v ± 10% of v (the spec's recommended margin)                    | low <= v + d and high >= v - d |

A number or Quantity is the range [n, n]: eq is n in [lo, hi), gt is n > v, and sa is n >= hi, so `sa100`
does not find 100.2, which lies inside the search value's range (search.html: sa "does not overlap").
Each comparison is a disjunction of conjunctions of terms (column, operator, operand) that
SqlBuilder and TextSql both render, so the two builders cannot drift apart.
"""
from __future__ import annotations

from ipt_fhir.fhir.outcome import bad_request

LOW, HIGH = "low", "high"  # the target's columns: search_number/search_quantity `value` and `high`
Term = tuple[str, str, "float | str"]  # (column, operator, a number or the other column)
# Ranges only (not points, whose high equals low), as the partial high index of search_tables states it.
A_RANGE: Term = (HIGH, "<>", LOW)


def range_terms(prefix: str, value: float, lo: float, hi: float) -> list[list[Term]]:
    """OR of ANDs of terms: the target ranges matching `prefix` `value` (implicit range [lo, hi))."""
    if prefix == "eq":  # low < hi is implied by high < hi; it bounds the scan of the value index
        return [[(LOW, ">=", lo), (LOW, "<", hi), (HIGH, "<", hi)]]
    # A condition on the high end alone is split: points by their low end (the value index), Ranges by
    # their high end (the partial high index); a single `high > v` would read every row of the parameter.
    if prefix == "ne":
        return [[(LOW, "<", lo)], [(LOW, ">=", hi)], [(HIGH, ">=", hi), A_RANGE]]
    if prefix == "gt":
        return [[(LOW, ">", value)], [(HIGH, ">", value), A_RANGE]]
    if prefix == "lt":
        return [[(LOW, "<", value)]]
    if prefix == "ge":
        return [[(LOW, ">=", value)], [(HIGH, ">=", value), A_RANGE]]
    if prefix == "le":
        return [[(LOW, "<=", value)]]
    if prefix == "sa":
        return [[(LOW, ">=", hi)]]
    if prefix == "eb":  # low < lo is implied by high < lo; it bounds the scan of the value index
        return [[(LOW, "<", lo), (HIGH, "<", lo)]]
    if prefix == "ap":
        margin = abs(value) * 0.1
        return [[(LOW, ">=", value - margin), (LOW, "<=", value + margin)],
                [(LOW, "<=", value + margin), (HIGH, ">=", value - margin), A_RANGE]]
    raise bad_request(f"Unknown prefix {prefix}")
