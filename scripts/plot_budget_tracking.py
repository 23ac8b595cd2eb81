"""Plot E_p[cost] / budget per epoch of several searches (python scripts/plot_budget_tracking.py OUT.png RUN_DIR...).

Each RUN_DIR is a `haloc-hw search` folder (its search_history.json); the folder name labels its line.
"""

import json
import sys
from pathlib import Path

from haloc_hw.search.diagnostics import plot_budget_tracking

if len(sys.argv) < 3 or not all((Path(d) / "search_history.json").is_file() for d in sys.argv[2:]):
    sys.exit("usage: python scripts/plot_budget_tracking.py OUT.png RUN_DIR...  (each RUN_DIR holds search_history.json)")
runs = {Path(d).name: json.loads((Path(d) / "search_history.json").read_text()) for d in sys.argv[2:]}
print(plot_budget_tracking(runs, sys.argv[1]))
