"""
setuptools reads setup.cfg; this adds one build step: the status page's
gettext catalogues (xxterocpp/locale/*/LC_MESSAGES/*.po) are compiled into
.mo files in the build tree, so that wheels and the Debian package ship
them (xxterocpp/web/msgfmt.py, loaded by path: nothing of xxterocpp is
importable yet).
"""

import glob
import importlib.util
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _msgfmt():
    spec = importlib.util.spec_from_file_location(
        "_xxterocpp_msgfmt", os.path.join(HERE, "xxterocpp", "web", "msgfmt.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class build_py_with_catalogues(build_py):
    """
    build_py, then every .po catalogue compiled beside its copy.
    """

    def run(self):
        super().run()
        msgfmt = _msgfmt()
        for source in sorted(glob.glob(os.path.join(HERE, "xxterocpp", "locale", "*",
                                                    "LC_MESSAGES", "*.po"))):
            relative = os.path.relpath(source, HERE)
            target = os.path.join(self.build_lib, os.path.splitext(relative)[0] + ".mo")
            with open(source, encoding="utf-8") as f:
                compiled = msgfmt.compile_mo(msgfmt.parse_po(f.read(), relative))
            self.mkpath(os.path.dirname(target))
            with open(target, "wb") as f:
                f.write(compiled)
            self.announce(f"compiled {relative} -> {target}", level=2)


setup(cmdclass={"build_py": build_py_with_catalogues})
