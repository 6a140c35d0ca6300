"""The HTTP service: FastAPI app, request decoding, predictor backends, micro-batching, auth, web page."""
