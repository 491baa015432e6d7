"""Map core/, app/ and resources/ into the cryoscape namespace (pyproject holds the rest)."""
from setuptools import find_packages, setup

packages = ["cryoscape.resources"] + [
    f"cryoscape.{top}" + (f".{sub}" if sub else "")
    for top in ("core", "app") for sub in ["", *find_packages(top)]]
setup(packages=packages,
      package_dir={"cryoscape.core": "core", "cryoscape.app": "app",
                   "cryoscape.resources": "resources"})
