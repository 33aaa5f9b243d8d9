"""``gatehouse libraries``: show the library index, or build/extend it from npm."""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path
from typing import Any

from scanner.config import Settings
from scanner.libraries import index_paths
from scanner.libraries.index import LibraryIndex
from scanner.libraries.npm import HttpRegistry, build_index


def add_library_commands(sub: Any) -> None:
    lib = sub.add_parser("libraries", help="the index of published libraries (recognition)")
    lib_sub = lib.add_subparsers(required=True, metavar="ACTION")
    st = lib_sub.add_parser("status", help="what the shipped and the local index cover")
    st.add_argument("--packages", action="store_true", help="list every package and version")
    st.set_defaults(func=cmd_status)
    build = lib_sub.add_parser(
        "build", help="add npm packages (name or name@version) to the local index"
    )
    build.add_argument("packages", nargs="*", help="default: the list in the packages file")
    build.add_argument(
        "--packages-file",
        type=Path,
        help="a TOML file with `npm = [...]` (default rules/libraries/packages.toml)",
    )
    build.add_argument("--versions", type=int, help="recent releases per package (default 3)")
    build.add_argument(
        "--output",
        type=Path,
        help="the index to extend (default <data_dir>/libraries/npm-index.json.xz); name"
        " rules/libraries/npm-index.json.xz to rebuild the shipped one",
    )
    build.add_argument("--fresh", action="store_true", help="start from an empty index")
    build.set_defaults(func=cmd_build)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    for label, path in zip(("shipped", "local"), index_paths(settings), strict=True):
        if not path.is_file():
            print(f"{label}: {path} (none)")
            continue
        index = LibraryIndex.load(path)
        packages = index.packages()
        versions = sum(len(v) for v in packages.values())
        built = index.meta.get("built", "?")
        print(
            f"{label}: {path} ({path.stat().st_size / 1024:.0f} KiB): {len(index)} files of"
            f" {len(packages)} packages, {versions} versions; built {built}"
        )
        if args.packages:
            for name in sorted(packages):
                print(f"  {name}: {', '.join(sorted(packages[name]))}")
    return 0


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    listed = _package_list(args.packages_file or settings.rules_dir / "libraries/packages.toml")
    names = args.packages or listed["npm"]
    versions = args.versions or int(listed.get("versions", 3))
    output: Path = args.output or index_paths(settings)[1]
    output.parent.mkdir(parents=True, exist_ok=True)
    index = LibraryIndex() if args.fresh or not output.is_file() else LibraryIndex.load(output)
    start = time.monotonic()
    index, failures = build_index(
        HttpRegistry(), names, versions, into=index, progress=lambda m: print(f"  {m}")
    )
    index.meta.update({"source": "registry.npmjs.org", "built": time.strftime("%Y-%m-%d")})
    index.save(output)
    print(
        f"{output}: {len(index)} files of {len(index.packages())} packages"
        f" ({output.stat().st_size / 1024:.0f} KiB) in {time.monotonic() - start:.0f} s"
    )
    for failure in failures:
        print(f"  failed: {failure}")
    return 1 if failures and len(failures) == len(names) else 0


def _package_list(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)
