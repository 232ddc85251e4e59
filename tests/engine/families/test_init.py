"""The family package: every module of it is a family, and the registry lists its models."""

import pkgutil

import napari_samlabel.engine.families as families_pkg
from napari_samlabel.engine.families import FAMILIES, get_family, tiny_models
from napari_samlabel.engine.registry import get_model_spec, model_names


def test_every_family_module_is_found_by_listing_the_package():
    modules = {m.name for m in pkgutil.iter_modules(families_pkg.__path__)}
    # every public module is a family; "_" modules are helpers of one (_sam3_model)
    assert set(FAMILIES) == {m for m in modules if not m.startswith("_")}
    assert "_sam3_model" in modules and "_sam3_model" not in FAMILIES
    for name, fam in FAMILIES.items():
        assert fam.name == name and get_family(name) is fam


def test_the_registry_lists_every_familys_tiny_models_for_tests():
    tiny = tiny_models()
    assert {spec.family for spec in map(get_model_spec, tiny)} == set(FAMILIES)
    assert set(tiny) == {n for n in model_names() if get_model_spec(n).for_tests}
    for name, (family, config) in tiny.items():
        assert get_model_spec(name).family == family and get_model_spec(name).config == config


def test_official_configs_have_an_architecture_key():
    for name in model_names(include_tests=False):
        spec = get_model_spec(name)
        key = get_family(spec.family).architecture_key(spec.config)
        assert key is not None and (key[0] == "hiera" or key[1] == spec.family)
