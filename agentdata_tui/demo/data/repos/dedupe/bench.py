"""Benchmark: find the duplicate e-mail addresses in a fixed CSV import batch."""

import csv
import io
import random

from dupes import find_duplicates

N = 5200


def make_export(n, seed=1234):
    """Deterministic CSV export: n customers plus n // 3 repeated rows, shuffled,
    with the messy casing/whitespace real exports have."""
    rng = random.Random(seed)
    rows = [(i, f"User{i:05d}@Example.com") for i in range(n)]
    rows += [rows[rng.randrange(n)] for _ in range(n // 3)]
    rng.shuffle(rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "email"])
    for row_id, email in rows:
        writer.writerow([row_id, f"  {email} " if rng.random() < 0.5 else email])
    return out.getvalue()


def load_emails(text):
    return [row["email"].strip().lower() for row in csv.DictReader(io.StringIO(text))]


if __name__ == "__main__":
    emails = load_emails(make_export(N))
    duplicates = find_duplicates(emails)
    print(f"{len(emails)} rows, {len(duplicates)} duplicated addresses")
