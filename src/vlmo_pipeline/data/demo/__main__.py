"""``python -m vlmo_pipeline.data.demo --out DIR --images N --seed S``: the demo-world command line."""

import sys

from vlmo_pipeline.data.demo.world import main

sys.exit(main())
