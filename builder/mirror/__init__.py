"""The source mirror: python.org's ftp layout, release keys and a keyserver, for builds
without the internet.

layout (pure): where each file goes; config (pure): the builders file's `mirrors:` and the
Dockerfile rewrite; verify, fill, serve: the edges (gpg, apt, HTTP).
"""
