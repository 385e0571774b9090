"""The flow: resolve a run's options into one description, load its data and model, train,
evaluate and publish (`run`); several runs as one experiment (`experiments`)."""
