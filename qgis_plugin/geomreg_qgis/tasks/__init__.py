"""Background tasks (QgsTask) of the plugin."""
