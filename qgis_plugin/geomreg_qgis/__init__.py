"""geomreg for QGIS: co-register rasters with RegNetMamba-2 from the map, a dialog or Processing."""


def classFactory(iface):  # noqa: N802 (QGIS looks this name up)
    """Entry point QGIS calls when it loads the plugin."""
    # Imported here so that listing plugins (which only reads metadata.txt) stays cheap.
    from .plugin import GeomregPlugin

    return GeomregPlugin(iface)
