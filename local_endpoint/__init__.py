"""RunPod on localhost: one endpoint's client API and the worker API the SDK uses.
See server.py for the routes and __main__.py for the command."""
