"""One router per resource, composed by :func:`recengine.serving.app.create_app`."""
