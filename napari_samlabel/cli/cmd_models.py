"""``samlabel models``: list the registered model types, their packages and cache state."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` sub-command."""
    p = subparsers.add_parser(
        "models", help="list model types (SAM, MobileSAM, SAM-HQ, SAM 2), packages and cache",
        description="List the model types --model accepts: family, whether its optional "
                    "package is installed (and the pip command if not), measured CPU encode "
                    "time, where each checkpoint is cached and where it is downloaded from.")
    p.add_argument("--cache", "--cache-dir", dest="cache_dir", metavar="DIR", type=Path,
                   help="cache root (default: $SAMLABEL_CACHE_DIR or the user cache dir)")
    p.add_argument("--all", action="store_true", help="include models that exist for tests")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one block per model type."""
    from napari_samlabel.engine.checkpoint import cache_root, cached_checkpoint_path
    from napari_samlabel.engine.families import get_family, install_hint, missing_modules
    from napari_samlabel.engine.registry import DEFAULT_MODEL, get_model_spec, model_names

    print(f"cache root: {cache_root(args.cache_dir)}")
    for name in model_names(include_tests=args.all):
        spec = get_model_spec(name)
        family = get_family(spec.family)
        path = cached_checkpoint_path(name, args.cache_dir)
        if path is None:
            state = "no download: pass --checkpoint PATH"
        elif path.is_file():
            state = f"cached: {path}"
        else:
            state = f"not cached (downloaded on first use to {path})"
        default = " (default)" if name == DEFAULT_MODEL else ""
        aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"\n{name}{default}{aliases}: {spec.description}")
        missing = missing_modules(spec.family)
        package = (f"package missing ({', '.join(missing)}): {install_hint(spec.family)}"
                   if missing else "package installed")
        speed = (f"; about {spec.cpu_encode_s:.1f} s per image on 2 CPU cores"
                 if spec.cpu_encode_s else "")
        print(f"  family: {family.title}; {package}{speed}")
        print(f"  {state}")
        if spec.url:
            print(f"  url: {spec.url}")
            print(f"  {spec.known_hash}")
    return 0
