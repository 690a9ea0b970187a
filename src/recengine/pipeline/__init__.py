"""From a dataset to trained, evaluated models: prepare, train, evaluate; later gate and publish."""
