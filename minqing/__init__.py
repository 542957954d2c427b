"""Minqing (民情): event-sourced casework for county governments — the shared kernel."""
import warnings

# nameko 2.14 runs on eventlet, which warns on import that it is in maintenance mode; we know.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
