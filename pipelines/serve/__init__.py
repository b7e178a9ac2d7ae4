"""Decoding, prediction, evaluation, deployment and the HTTP service."""
