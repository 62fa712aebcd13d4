"""The app's views and small widgets."""
