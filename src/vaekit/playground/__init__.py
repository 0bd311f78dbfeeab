"""The interactive latent-space page: a small ASGI server and the static page it serves."""
