"""Frames in and results out: video sources (file, image folder, camera, stream), the annotated
video writer and its overlay, a run's output files, the ``--show`` window, the demo clip.

Nothing is imported here; import the module that does the job.
"""
