"""Integrations with web frameworks and tracing; each module imports its framework only when used.

``taskqueue.integrations.flask``: ``TaskQueueExtension``, HTTP endpoints and
workers inside a Flask app (``pip install taskqueue[flask]``).

``taskqueue.integrations.opentelemetry``: ``instrument(q)``, producer and
consumer spans built on the hooks (``pip install taskqueue[otel]``).
"""
