"""Integrations with web frameworks; each module imports its framework only when used.

``taskqueue.integrations.flask``: ``TaskQueueExtension``, HTTP endpoints and
workers inside a Flask app (``pip install taskqueue[flask]``).
"""
