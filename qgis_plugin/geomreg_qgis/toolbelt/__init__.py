"""Non-GUI helpers of the plugin: settings, logging, engine discovery, the CLI runner."""
