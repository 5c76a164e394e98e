"""Our re-implementation of Comet's REST client: ``API`` and ``APIExperiment``."""
