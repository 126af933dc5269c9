"""The demo-world generator, shaped like the readers: ``demo/<dataset>.py`` writes the raw layout that
``raw/<dataset>.py`` reads.

* :mod:`.world`: one generation run (counts, random streams, staging and swap-in, the marker) and the command line;
* :mod:`.scene`: the scene model, sampling, rendering and image encoding;
* :mod:`.language`: every caption, phrase and corpus sentence derived from a scene;
* :mod:`.output`: atomic file writes and the demo host of the URLs;
* :mod:`.img2dataset`: the simulated download of CC3M and SBU and img2dataset's output folder;
* :mod:`.coco`, :mod:`.f30k`, :mod:`.vg`, :mod:`.cc3m`, :mod:`.sbu`, :mod:`.vqav2`, :mod:`.nlvr2`, :mod:`.text`:
  one dataset each.
"""

from vlmo_pipeline.data.demo.world import (
    DEFAULT_N_IMAGES,
    MARKER_FILE,
    add_subcommand,
    generate_demo_world,
    main,
    plan_counts,
)

__all__ = ["DEFAULT_N_IMAGES", "MARKER_FILE", "add_subcommand", "generate_demo_world", "main", "plan_counts"]
