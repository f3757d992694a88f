"""The test bed: real registries, a second Docker engine and base images, made on this machine.

Nothing is pulled from Docker Hub; every process started here is stopped by its PID.
"""
