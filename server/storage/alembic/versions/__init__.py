"""One revision per migration in ``storage.migrations``, named as it is."""
