"""``mp3net serve``: a local web page to generate, audition, interpolate and download tracks.

Standard library only (``http.server``) plus the project's own dependencies: a JSON API
(:mod:`mp3net.serve.app`), one generation worker per model (:mod:`mp3net.serve.jobs`), the models and the
training runs they watch (:mod:`mp3net.serve.models`), and one static page without external assets
(``static/``). The server only ever serves its own page and the files it generated, looked up by job id
and track number, never by a path taken from the request.
"""

from mp3net.serve.app import App, make_server

__all__ = ["App", "make_server"]
