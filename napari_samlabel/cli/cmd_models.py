"""``samlabel models``: list the registered model types, their packages and cache state."""

from __future__ import annotations

import argparse

from napari_samlabel.cli._grammar import add_cache


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` sub-command."""
    p = subparsers.add_parser(
        "models", help="list model types (SAM, MobileSAM, SAM-HQ, SAM 2, SAM 3), packages, cache",
        description="List the model types --model accepts: family, whether its optional "
                    "package is installed (and the pip command if not), measured CPU encode "
                    "time, where each checkpoint is cached and where it is downloaded from.")
    add_cache(p)
    p.add_argument("--all", action="store_true", help="include models that exist for tests")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one block per model type."""
    from napari_samlabel.engine.catalogue import model_choices
    from napari_samlabel.engine.checkpoint import cache_root
    from napari_samlabel.engine.families import missing_modules
    from napari_samlabel.engine.registry import get_model_spec

    print(f"cache root: {cache_root(args.cache_dir)}")
    for row in model_choices(args.cache_dir, include_tests=args.all):
        spec = get_model_spec(row.name)
        if row.checkpoint is None:
            state = "no download: pass --checkpoint PATH"
        elif row.cached:
            state = f"cached: {row.checkpoint}"
        elif spec.hub_repo:
            state = f"not cached (downloaded on first use with your hub token to {row.checkpoint})"
        else:
            state = f"not cached (downloaded on first use to {row.checkpoint})"
        default = " (default)" if row.default else ""
        aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"\n{row.name}{default}{aliases}: {row.description}")
        package = ("package installed" if row.installed else
                   f"package missing ({', '.join(missing_modules(spec.family))}): "
                   f"{row.install_hint}")
        speed = (f"; about {row.cpu_encode_s:.1f} s per image on 2 CPU cores "
                 f"({row.cpu_precision} encoder, this CPU's)" if row.cpu_encode_s else
                 f"; CPU speed in {row.cpu_precision} not measured")
        print(f"  family: {row.family_title}; {package}{speed}")
        print(f"  {state}")
        if spec.hub_repo:
            print(f"  hub: https://huggingface.co/{spec.hub_repo} (gated: accept the licence, "
                  "then `hf auth login`; or --checkpoint DIR)")
        if spec.url:
            print(f"  url: {spec.url}")
            print(f"  {spec.known_hash}")
    return 0
