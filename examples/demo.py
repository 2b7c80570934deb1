"""The main job in one go: build the flagship, serve it, ask for one prediction, stop.

Run by ``make demo``. Uses your BentoML home (``BENTOML_HOME``, default ``~/bentoml``).
"""

import json
import sys
from pathlib import Path

import httpx

from nb2prod.build.pipeline import build
from nb2prod.core.errors import Nb2prodError
from nb2prod.serve import serving
from nb2prod.runtime.loading import load_version

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    try:
        result = build(ROOT / "notebooks" / "breast_cancer.ipynb", ROOT / "build" / "breast_cancer")
    except Nb2prodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record = dict(load_version(result.model_tag)[0].examples[0])
    print(f"\nserving {result.bento_tag} on localhost …")
    with serving(result.bento_tag) as url:
        body = {"records": [record]}
        print(f"POST {url}/predict\n{json.dumps(body)[:160]}…")
        answer = httpx.post(f"{url}/predict", json=body, timeout=30)
        print(f"→ {answer.status_code}\n{json.dumps(answer.json(), indent=2)}")
    print("server stopped.")
    return 0 if answer.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
