"""The offline page template of `dvc plots show`: DVC's renderer's very bundles, inlined, and
the project's default. (tests/test_pipeline_e2e.py opens the page it makes in a browser.)"""

import configparser
import io
import tarfile

from finetune.commands.plots_template import LICENSES_FILE, PACKAGES, TEMPLATE_FILE, build, renderer_versions
from tests.repos import PROJECT_ROOT


def test_the_committed_template_inlines_the_versions_dvcs_renderer_loads():
    # Fails when an update of dvc-render names other versions: then `make plots-template`.
    versions = renderer_versions()
    assert set(versions) == set(PACKAGES)
    page = (PROJECT_ROOT / TEMPLATE_FILE).read_text()
    for package in PACKAGES:
        assert f"<script>/* {package}-{versions[package]} */" in page
    assert "{plot_divs}" in page and "{refresh_tag}" in page
    assert "{scripts}" not in page and "<script src=" not in page  # DVC's CDN tags have nowhere to go
    licences = (PROJECT_ROOT / LICENSES_FILE).read_text()
    assert all(f"{package}-{versions[package]} (npm)" in licences for package in PACKAGES)
    assert licences.count("Redistribution and use in source and binary forms") == len(PACKAGES)


def test_dvc_config_makes_it_the_default_page():
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / ".dvc" / "config")
    # Relative to .dvc/, as DVC resolves plots.html_template.
    assert PROJECT_ROOT / ".dvc" / config["plots"]["html_template"] == PROJECT_ROOT / TEMPLATE_FILE


def npm_tarball(folder, package, version, bundle):
    path = folder / f"{package}-{version}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in ((f"package/build/{package}.min.js", bundle), ("package/LICENSE", f"{package} licence")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_build_inlines_each_bundle_in_load_order(tmp_path):
    versions = renderer_versions()
    tarballs = [npm_tarball(tmp_path, package, versions[package], f"window.{package.replace('-', '_')} = 1;")
                for package in reversed(PACKAGES)]
    build(tarballs, tmp_path / "offline.html", tmp_path / "licences.txt")
    page = (tmp_path / "offline.html").read_text()
    positions = [page.index(f"window.{package.replace('-', '_')} = 1;") for package in PACKAGES]
    assert positions == sorted(positions)  # vega before vega-lite before vega-embed
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert "vega-embed licence" in (tmp_path / "licences.txt").read_text()
