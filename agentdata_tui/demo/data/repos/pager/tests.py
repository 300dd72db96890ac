import unittest

from paginator import get_page, page_count, page_range


class PageCountTests(unittest.TestCase):
    def test_exact_multiple(self):
        self.assertEqual(page_count(30, 10), 3)

    def test_partial_last_page(self):
        self.assertEqual(page_count(31, 10), 4)

    def test_empty(self):
        self.assertEqual(page_count(0, 10), 0)

    def test_bad_per_page(self):
        with self.assertRaises(ValueError):
            page_count(10, 0)


class PageRangeTests(unittest.TestCase):
    def test_includes_last_page(self):
        self.assertEqual(list(page_range(30, 10)), [1, 2, 3])

    def test_partial_last_page(self):
        self.assertEqual(list(page_range(25, 10)), [1, 2, 3])

    def test_single_page(self):
        self.assertEqual(list(page_range(5, 10)), [1])

    def test_no_items(self):
        self.assertEqual(list(page_range(0, 10)), [])


class GetPageTests(unittest.TestCase):
    def test_first_page(self):
        self.assertEqual(get_page(list(range(25)), 1), list(range(10)))

    def test_last_page(self):
        self.assertEqual(get_page(list(range(25)), 3), [20, 21, 22, 23, 24])

    def test_out_of_range(self):
        self.assertEqual(get_page(list(range(25)), 4), [])
        self.assertEqual(get_page(list(range(25)), 0), [])


if __name__ == "__main__":
    unittest.main()
