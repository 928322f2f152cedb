"""Training: the multitask network, its losses, data steps and the training loop."""
