import unittest

from stats import mean, median, summarize


class MeanMedianTests(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3, 4]), 2.5)

    def test_mean_empty(self):
        self.assertIsNone(mean([]))

    def test_median_odd(self):
        self.assertEqual(median([3, 1, 2]), 2)

    def test_median_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)


class SummarizeTests(unittest.TestCase):
    def test_summarize(self):
        self.assertEqual(
            summarize([3, 1, 2]),
            {"count": 3, "mean": 2, "median": 2, "min": 1, "max": 3},
        )

    def test_summarize_generator(self):
        self.assertEqual(summarize(x for x in (5, 5))["count"], 2)

    def test_summarize_empty(self):
        self.assertEqual(
            summarize([]),
            {"count": 0, "mean": None, "median": None, "min": None, "max": None},
        )


if __name__ == "__main__":
    unittest.main()
