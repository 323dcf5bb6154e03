"""Encoders (keras-hub backbones and Hugging Face weight converters), task heads and task models."""
