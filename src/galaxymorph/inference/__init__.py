"""Inference: loading trained classifiers, test-time augmentation, batch prediction, export."""
