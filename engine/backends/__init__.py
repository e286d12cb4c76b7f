"""Runtime backends implementing the cascade's :class:`engine.cascade.Regressor` interface."""
