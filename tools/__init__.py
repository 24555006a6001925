"""Developer scripts: the demo, screenshots, system package setup."""
