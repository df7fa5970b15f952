"""`pip install ./contracts` into an empty environment brings Pydantic and nothing of the services."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_contracts_install_alone_and_decode_a_golden_example(tmp_path):
    venv.EnvBuilder(with_pip=True).create(tmp_path / "env")
    python = tmp_path / "env" / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-c", ROOT / "constraints.txt", ROOT / "contracts"],
                   check=True, timeout=600)
    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True,
                               text=True).stdout
    names = {line.split("==")[0].lower().replace("_", "-") for line in installed.splitlines()}
    assert names - {"pip", "setuptools", "wheel"} == {"postsale-contracts", "pydantic", "pydantic-core",
                                                       "annotated-types", "typing-extensions", "typing-inspection"}
    example = ROOT / "contracts" / "examples" / "checkout.purchases.v1" / "postsale.purchase.completed.json"
    script = (
        "import sys; from postsale.contracts import decode, PurchaseCompleted, topics;"
        "e = decode({'ce_id': '1', 'ce_type': 'postsale.purchase.completed', 'ce_source': '/t', 'ce_specversion': '1.0'},"
        " open(sys.argv[1], 'rb').read());"
        "assert isinstance(e, PurchaseCompleted) and topics.PURCHASES.name == 'checkout.purchases.v1'; print(e.purchase_id)"
    )
    decoded = subprocess.run([python, "-c", script, example], check=True, capture_output=True, text=True)
    assert decoded.stdout.strip() == "pur_5d1c9a7e3b2f4c80"
