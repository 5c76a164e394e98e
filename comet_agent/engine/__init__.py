"""The engine: one job's life (``job.Job``), the host sampler shared by jobs, the scheduler, and
the link to the experiment. ``Agent`` (in-process) and the daemon both drive it."""
