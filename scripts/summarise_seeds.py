"""Summarise a scripts/study_seeds.sh folder: Markdown tables and plots (python scripts/summarise_seeds.py OUT DEST)."""

import json
import sys
from pathlib import Path

from haloc_hw.search.diagnostics import collect_study, plot_accuracy_vs_energy, plot_entropy, study_markdown

if len(sys.argv) != 3 or not Path(sys.argv[1]).is_dir():
    sys.exit("usage: python scripts/summarise_seeds.py STUDY_FOLDER DEST  (STUDY_FOLDER: the OUT of study_seeds.sh)")
root, dest = Path(sys.argv[1]), Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
runs = collect_study(root)
(dest / "summary.md").write_text(study_markdown(runs))
plot_accuracy_vs_energy(runs, dest / "accuracy_vs_energy.png")
for history in sorted(root.glob("s*/haloc/search_history.json")):
    plot_entropy(json.loads(history.read_text()), dest / f"entropy_{history.parent.parent.name}.png")
print((dest / "summary.md").read_text())
