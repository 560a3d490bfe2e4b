"""``drn doctor``: is this setup ready for the plan of params.yaml? A read-only checklist.

The package owns those checks: each one a small function that returns a
:class:`~drn.doctor.result.Result` (its name, ``ok``/``warn``/``fail``/``skip``, what it found,
and the fix for a miss). It reads params.yaml, the Snakemake profile and what Slurm says about
itself (``scontrol show partition/node/config``), every Slurm command under a short timeout; it
writes nothing, except for ``--probe``, which submits one 1-minute job and keeps its output under
``{paths.results}/logs/doctor/``.

Its modules, cut by what each check looks at, bottom to top (each imports only those above it):

* :mod:`~drn.doctor.result`: :class:`Result`, :class:`Answer`, :func:`command` with its timeout,
  the ``Runner`` type, the statuses; it imports none of the others.
* :mod:`~drn.doctor.profile`: the Snakemake profile (:func:`default_profile`,
  :func:`load_profile`) and each kind of job's :class:`Request`, as params.yaml and the profile
  make it: what the jobs ask for, before Slurm is asked anything.
* :mod:`~drn.doctor.slurm` (result, profile): what Slurm says (``scontrol`` parsing,
  :class:`Cluster`) and the ``slurm.*`` checks of the requests against it. The Slurm half is
  cut in two (profile, slurm) to keep each module under 500 lines; the requests go with the
  profile, which they are read from.
* :mod:`~drn.doctor.storage` (result): file systems, the ``data.*`` sources and the ``disk.*``
  needs and free space.
* :mod:`~drn.doctor.environment` (result, profile, slurm, storage): the ``env.*`` checks (venv and
  working directory the nodes see, torch's CUDA build, ``--probe``, CUDA MPS for packs) and
  ``tracking``. The probe
  is here, not in slurm: it submits through Slurm, but what it checks, and names (``env.probe``),
  is this environment on a node.
* :mod:`~drn.doctor.attempts` (result, profile): ``plan.attempts`` (the profile's retries against
  the attempts a training needs) and ``--last`` (:func:`last_attempts`, :func:`render_last`).
* :mod:`~drn.doctor.checklist` (all of them): :func:`diagnose` (every check, in the order
  printed), ``plan``, :func:`exit_code`, :func:`render`; it re-exports the names the ``drn
  doctor`` command calls (``from drn.doctor import checklist as doctor``), as this package does.

May import: :mod:`drn.core`, :mod:`drn.models`, :mod:`drn.engine` (its standard-library
:mod:`~drn.engine.mps` at import: ``env.mps``), :mod:`drn.pipeline` (torch only inside the checks
that need it: ``drn doctor`` does not import torch at start). Not :mod:`drn.report` or
:mod:`drn.commands`.
"""

from drn.doctor.attempts import last_attempts, render_last
from drn.doctor.checklist import diagnose, exit_code, render
from drn.doctor.profile import default_profile, load_profile

__all__ = ["default_profile", "diagnose", "exit_code", "last_attempts", "load_profile", "render",
           "render_last"]  # fmt: skip
