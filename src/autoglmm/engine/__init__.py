"""The mixed-model engine. Arrays only: no pandas below this package's boundary."""
