"""Word queries on the offline CNN need only the ImageNet class names, shipped as data: the
query process must not import PyTorch (it took 4-9 s when the names came from timm)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from searchapp.encoders.imagenet import imagenet_class_names
from tests.conftest import cli_env
from tests.integration.helpers import index


def test_shipped_names_are_timms_in_the_classifiers_order() -> None:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    assert imagenet_class_names() == tuple(info.index_to_description(i) for i in range(1000))


def test_a_word_query_on_the_cnn_imports_no_torch(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    code = (
        "import json, sys\n"
        "from searchapp.cli import main\n"
        f"code = main(['search', 'a cat', '--json', '--library', {str(library.directory)!r}])\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'open_clip') if m in sys.modules)\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}
    results = json.loads(done.stdout)["results"]
    assert results[0]["path"] == str(photos / "animals" / "cat.jpg")
