"""Training: optimizer and schedule, jitted steps, checkpoints, the train-and-evaluate loop."""
