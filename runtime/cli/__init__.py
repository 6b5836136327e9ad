"""The command line: ``python -m runtime.track`` as a pipeline of stages, and what every tool's
command line shares (:mod:`runtime.cli.program`, :mod:`runtime.cli.signals`).

Nothing is imported here, so a tool that needs only its usage name does not load OpenCV.
"""
