#!/usr/bin/env python3
"""Sum a CSV file of expenses by category.

The input is a bank or budgeting-app export with a header row. The columns this script needs
are ``date``, ``description``, ``category`` and ``amount``; any others are ignored. Amounts may
use a comma as the thousands separator and may carry a currency symbol. Refunds are negative.

Example::

    date,description,category,amount
    2024-03-01,Corner bakery,groceries,6.40
    2024-03-02,Monthly rail pass,transport,"1,050.00"
    2024-03-04,Refund: headphones,electronics,-59.99

Usage::

    python3 expenses_by_category.py expenses.csv
    python3 expenses_by_category.py expenses.csv --month 2024-03 --top 5
"""

import argparse
import csv
import sys
from collections import defaultdict
from decimal import Decimal, InvalidOperation

UNCATEGORISED = "uncategorised"


def parse_amount(text):
    """Convert an amount string such as ``"$1,050.00"`` or ``"-59.99"`` to a Decimal.

    Decimal is used instead of float so that sums of many small prices stay exact to the cent.
    Raises ValueError when the text is not a number after stripping symbols and separators.
    """
    cleaned = text.strip().replace(",", "").lstrip("$€£")
    if cleaned.startswith("(") and cleaned.endswith(")"):
        cleaned = "-" + cleaned[1:-1]  # accounting style negative: (12.50)
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None


def read_expenses(path, month=None):
    """Yield ``(category, amount)`` pairs from the CSV at ``path``.

    Rows whose date does not start with ``month`` (a ``YYYY-MM`` prefix) are skipped when
    ``month`` is given. Blank categories are reported as ``uncategorised``. Rows with an
    unreadable amount produce a warning on stderr and are skipped rather than aborting the run.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"date", "category", "amount"} - set(reader.fieldnames or [])
        if missing:
            raise SystemExit(f"{path}: missing column(s): {', '.join(sorted(missing))}")
        for line_no, row in enumerate(reader, start=2):
            if month and not row["date"].startswith(month):
                continue
            category = (row["category"] or "").strip().lower() or UNCATEGORISED
            try:
                amount = parse_amount(row["amount"])
            except ValueError as err:
                print(f"{path}:{line_no}: skipped, {err}", file=sys.stderr)
                continue
            yield category, amount


def totals_by_category(pairs):
    """Return a dict mapping each category to the sum of its amounts."""
    totals = defaultdict(Decimal)
    for category, amount in pairs:
        totals[category] += amount
    return dict(totals)


def print_report(totals, top=None):
    """Print categories from largest to smallest spend, with each one's share of the total."""
    grand_total = sum(totals.values(), Decimal(0))
    rows = sorted(totals.items(), key=lambda item: item[1], reverse=True)
    if top:
        rows = rows[:top]
    width = max((len(name) for name, _ in rows), default=8)
    for name, amount in rows:
        share = (amount / grand_total * 100) if grand_total else Decimal(0)
        print(f"{name:<{width}}  {amount:>12,.2f}  {share:5.1f}%")
    print(f"{'total':<{width}}  {grand_total:>12,.2f}")


def main(argv=None):
    """Parse command-line arguments and print the per-category report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv_path", help="CSV export with date, category and amount columns")
    parser.add_argument("--month", help="only include dates starting with YYYY-MM")
    parser.add_argument("--top", type=int, help="show only the N largest categories")
    args = parser.parse_args(argv)

    totals = totals_by_category(read_expenses(args.csv_path, args.month))
    if not totals:
        print("no expenses found")
        return 1
    print_report(totals, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
