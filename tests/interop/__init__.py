"""Interop tests: the real ``@verdant-web/store`` client, run in Node, against a live server."""
