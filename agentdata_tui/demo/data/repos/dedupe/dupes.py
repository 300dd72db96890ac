"""Find repeated records in an import batch."""


def find_duplicates(items):
    """Return the items that occur more than once.

    `items` may be any iterable of hashable values. Each duplicate is
    reported once, in the order in which its first repetition appears.
    """
    seen = []
    duplicates = []
    for item in items:
        if item in seen:
            if item not in duplicates:
                duplicates.append(item)
        else:
            seen.append(item)
    return duplicates


def has_duplicates(items):
    return bool(find_duplicates(items))
