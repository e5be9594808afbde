"""Build the offline page template of `dvc plots show` / `dvc plots diff`: DVC's own page with
vega, vega-lite and vega-embed inlined instead of loaded from a CDN, so the interactive plots
draw on a machine without network. `.dvc/config` makes it the project's default
(`plots.html_template`).

    make plots-template     # npm pack the versions DVC's renderer names, then this command

The bundles are those `dvc_render.vega.VegaRenderer.SCRIPTS` loads, at the very versions it
names; the template leaves out DVC's `{scripts}` placeholder, so no CDN tag is added to it.
"""

import argparse
import re
import tarfile
from pathlib import Path

from dvc_render.vega import VegaRenderer

TEMPLATE_FILE = Path(".dvc/plots/offline.html")
LICENSES_FILE = Path(".dvc/plots/offline.LICENSES.txt")
# The npm packages in the order the page loads them (vega-lite and vega-embed need vega).
PACKAGES = ("vega", "vega-lite", "vega-embed")

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <title>DVC Plot</title>
    <!-- {versions}, inlined (licences: {licenses}); made by finetune plots-template -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def renderer_versions():
    """{package: version} of the scripts DVC's Vega renderer loads from its CDN."""
    return dict(re.findall(r"/npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS))


def read_package(tarball):
    """(bundle, licence) texts of an `npm pack` tarball of one of PACKAGES."""
    with tarfile.open(tarball) as archive:
        name = Path(tarball).name.rpartition("-")[0]
        bundle = archive.extractfile(f"package/build/{name}.min.js").read().decode()
        licence = archive.extractfile("package/LICENSE").read().decode()
    return bundle, licence


def build(tarballs, template_file=TEMPLATE_FILE, licenses_file=LICENSES_FILE):
    versions = renderer_versions()
    by_name = {Path(path).name.removesuffix(".tgz"): path for path in tarballs}
    wanted = [f"{package}-{versions[package]}" for package in PACKAGES]
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise SystemExit(f"plots_template: no tarball for {', '.join(missing)} (npm pack {' '.join(missing)})")
    scripts, licenses = [], []
    for name in wanted:
        bundle, licence = read_package(by_name[name])
        if "</script" in bundle:
            raise SystemExit(f"plots_template: {name} contains '</script' and cannot be inlined as it is")
        scripts.append(f"    <script>/* {name} */\n{bundle}\n    </script>")
        licenses.append(f"{name} (npm), build/{name.rpartition('-')[0]}.min.js\n\n{licence.strip()}\n")
    template_file.parent.mkdir(parents=True, exist_ok=True)
    template_file.write_text(PAGE.format(versions=", ".join(wanted), licenses=licenses_file.name,
                                         scripts="\n".join(scripts)))
    licenses_file.write_text(("\n" + "-" * 78 + "\n\n").join(licenses))
    print(f"plots_template: {', '.join(wanted)} -> {template_file} ({template_file.stat().st_size // 1024} KiB)")


def add_arguments(parser):
    parser.add_argument("tarballs", nargs="*", help="npm pack tarballs of vega, vega-lite and vega-embed")
    parser.add_argument("--versions", action="store_true", help="print the package@version list to npm pack, and exit")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args(argv))


def run(arguments):
    if arguments.versions:
        print(" ".join(f"{package}@{renderer_versions()[package]}" for package in PACKAGES))
        return
    build(arguments.tarballs)


if __name__ == "__main__":
    main()
