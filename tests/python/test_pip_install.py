"""`pip install ./python` works offline into a fresh venv and the installed package talks
to the daemon (docs/python.md "Install").

The venv is made by the base interpreter of the running one (`python -m venv`: pip and
setuptools only, no `wheel`), sees the running interpreter's numpy through a .pth file,
and installs with --no-build-isolation --no-deps --no-index, reusing the build directory
($ADAPTCACHE_BUILD_DIR, artifacts as built: ADAPTCACHE_NO_BUILD=1, so the test never
compiles outside the build lock).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from daemon import Daemon, build_dir  # noqa: E402

REPO = os.environ.get("ADAPTCACHE_SOURCE_DIR",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def base_python() -> str:
    exe = getattr(sys, "_base_executable", "") or sys.executable
    return exe if os.path.exists(exe) else sys.executable


class PipInstallTest(unittest.TestCase):
    def test_install_and_health(self):
        with tempfile.TemporaryDirectory(prefix="adaptcache-pip-") as tmp, Daemon() as d:
            venv = os.path.join(tmp, "venv")
            subprocess.run([base_python(), "-m", "venv", venv], check=True, timeout=300)
            py = os.path.join(venv, "bin", "python")
            site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip()
            with open(os.path.join(site, "_outer_numpy.pth"), "w") as f:
                f.write(os.path.dirname(os.path.dirname(np.__file__)) + "\n")
            # In place: the backend finds the repository root (and the build) from python/.
            env = dict(os.environ, ADAPTCACHE_BUILD_DIR=build_dir(), ADAPTCACHE_NO_BUILD="1",
                       PIP_DISABLE_PIP_VERSION_CHECK="1")
            env.pop("PYTHONPATH", None)
            r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
                                os.path.join(REPO, "python")], env=env, capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            check = (
                "import adaptcache, os, sys\n"
                "c = adaptcache.Client(sys.argv[1])\n"
                "h = c.health()\n"
                "assert h.serving, h\n"
                "k = adaptcache.hash_tokens('pip/ns', [1, 2, 3])[0]\n"
                "import numpy as np\n"
                "x = np.arange(2*1*4*1*8, dtype=np.float16).reshape(2, 1, 4, 1, 8)\n"
                "c.put('pip/ns', k, x)\n"
                "assert (c.get_tensor('pip/ns', k) == x).all()\n"
                "print(os.path.dirname(adaptcache.__file__))\n"
                "print(h.version)\n")
            run = subprocess.run([py, "-c", check, d.target], env=env, capture_output=True, text=True,
                                 timeout=120, cwd=tmp)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            pkg_dir = run.stdout.splitlines()[0]
            self.assertTrue(pkg_dir.startswith(venv), f"imported from {pkg_dir}, not the venv")
            self.assertTrue(os.path.exists(os.path.join(pkg_dir, "libadaptcache_client.so")))
            self.assertTrue(os.path.exists(os.path.join(pkg_dir, "connectors", "hf.py")))  # subpackages too
            # The in-tree build left nothing in the source tree.
            self.assertFalse(os.path.exists(os.path.join(REPO, "python", "build")))
            shutil.rmtree(venv, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
