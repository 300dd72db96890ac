import unittest

from dupes import find_duplicates, has_duplicates


class FindDuplicatesTests(unittest.TestCase):
    def test_no_duplicates(self):
        self.assertEqual(find_duplicates(["a", "b", "c"]), [])

    def test_empty(self):
        self.assertEqual(find_duplicates([]), [])

    def test_reported_once(self):
        self.assertEqual(find_duplicates(["a", "a", "a", "b"]), ["a"])

    def test_order_of_first_repetition(self):
        # "b" repeats before "a" does, so it is reported first.
        self.assertEqual(find_duplicates(["a", "b", "c", "b", "a", "c"]), ["b", "a", "c"])

    def test_works_with_any_hashable(self):
        self.assertEqual(find_duplicates([1, (2, 3), 1, (2, 3), 4]), [1, (2, 3)])

    def test_accepts_generators(self):
        self.assertEqual(find_duplicates(x % 3 for x in range(7)), [0, 1, 2])

    def test_has_duplicates(self):
        self.assertTrue(has_duplicates(["x", "y", "x"]))
        self.assertFalse(has_duplicates(["x", "y"]))


if __name__ == "__main__":
    unittest.main()
