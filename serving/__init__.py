"""Serving road_tf SavedModels: TF Serving configs, a client, and a TF-Serving-compatible devserver.

`python -m serving.client` asks a server (TF Serving or the devserver) for answers;
`python -m serving.devserver` is a development stand-in for `tensorflow_model_server`.
Importing this package imports nothing heavy: TensorFlow loads only where it is needed.
"""
