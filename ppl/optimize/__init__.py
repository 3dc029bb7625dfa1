"""Point estimation (MLE, MAP) with optax."""
