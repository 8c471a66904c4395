"""The TensorFlow runtime."""
