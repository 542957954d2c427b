"""pytest imports test modules by basename (rootdir-relative packages are not used here), so two test
files with one name in different folders stop the whole collection. Caught here, with both paths."""
from collections import defaultdict
from pathlib import Path


def test_test_modules_have_unique_basenames():
    seen: dict[str, list[str]] = defaultdict(list)
    for path in Path(__file__).resolve().parents[1].rglob("test_*.py"):
        seen[path.name].append(str(path))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}
