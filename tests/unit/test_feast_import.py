"""raylane imports Feast with typeguard's decorator switched off, and only while Feast loads."""

import subprocess
import sys
import textwrap
from pathlib import Path


def test_feast_loads_unchecked_and_typeguard_is_restored(tmp_path: Path) -> None:
    # a fresh interpreter: this test session may have imported Feast already
    code = textwrap.dedent(
        """
        import typeguard
        before = typeguard.typechecked
        import raylane.feast_stores
        import feast.feature_view, inspect
        assert typeguard.typechecked is before, "typeguard.typechecked was not restored"
        # typeguard instruments a function by compiling calls to its checks into the code
        names = feast.feature_view.FeatureView.__init__.__code__.co_names
        assert "typeguard" not in names, "Feast was loaded with typeguard's checks"
        @typeguard.typechecked
        def f(x: int) -> int:
            return x
        try:
            f("no")
        except typeguard.TypeCheckError:
            print("checked")
        """
    )
    script = tmp_path / "probe.py"  # a file: typeguard reads the decorated function's source
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "checked"
