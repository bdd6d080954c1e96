"""Preprocessing: the one ``preprocess()`` every entry point uses, windows, model input."""
