import unittest

from convert import celsius_to_fahrenheit, celsius_to_kelvin, fahrenheit_to_celsius, kelvin_to_celsius
from display import format_temperature


class ConvertTests(unittest.TestCase):
    def test_boiling_point(self):
        self.assertAlmostEqual(celsius_to_fahrenheit(100), 212)

    def test_freezing_point(self):
        self.assertAlmostEqual(celsius_to_fahrenheit(0), 32)

    def test_minus_forty_is_the_same(self):
        self.assertAlmostEqual(celsius_to_fahrenheit(-40), -40)

    def test_round_trip(self):
        for c in (-12.5, 0, 21.3, 37, 100):
            self.assertAlmostEqual(fahrenheit_to_celsius(celsius_to_fahrenheit(c)), c)

    def test_fahrenheit_to_celsius(self):
        self.assertAlmostEqual(fahrenheit_to_celsius(212), 100)

    def test_kelvin(self):
        self.assertAlmostEqual(celsius_to_kelvin(0), 273.15)
        self.assertAlmostEqual(kelvin_to_celsius(0), -273.15)
        with self.assertRaises(ValueError):
            celsius_to_kelvin(-300)


class FormatTests(unittest.TestCase):
    def test_celsius(self):
        self.assertEqual(format_temperature(21.25), "21.2 °C")

    def test_fahrenheit(self):
        self.assertEqual(format_temperature(20, "F"), "68.0 °F")

    def test_unknown_unit(self):
        with self.assertRaises(ValueError):
            format_temperature(20, "X")


if __name__ == "__main__":
    unittest.main()
