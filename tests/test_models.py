"""STCN and STM specifics at their full sizes (the contract every family shares: tests/test_family_contract.py)."""

import functools
import re

import jax
import jax.numpy as jnp
import pytest

from jaxvos.models import registry


@pytest.mark.parametrize("name", ["stcn", "stcn-r18", "stm", "stm-r18"])
def test_full_size_variables_and_features(name):
  family = registry.build(name)
  variables = jax.eval_shape(functools.partial(family.init, frame_hw=(64, 64)), jax.random.key(0))
  query, cache, aux = jax.eval_shape(lambda v, f: family.module.apply(v, f, None, method="encode_query"),
                                     variables, jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  assert query["key16"].shape == (1, 4, 4, family.config.key_dim)
  assert cache == {} and aux == {}
  assert set(variables) == {"params", "batch_stats"}


def test_unknown_model_and_unknown_fields_are_clear_errors():
  with pytest.raises(ValueError, match="unknown model 'stcm'"):
    registry.build("stcm")
  with pytest.raises(ValueError, match="unknown STCNConfig fields: key_dims"):
    registry.build("stcn", key_dims=3)


@pytest.mark.parametrize("field, value, message", [
    ("tile_pixels", "[16", "SpVOSConfig.tile_pixels must be a list, not '[16'"),
    ("top_k", 2.5, "SpVOSConfig.top_k must be int or None, not 2.5"),
    ("refresh_every", True, "SpVOSConfig.refresh_every must be int, not True"),
    ("force", 1, "SpVOSConfig.force must be str or None, not 1"),
    ("memory", {"slots": "6"}, "MemoryConfig.slots must be int, not '6'"),
])
def test_a_value_of_the_wrong_type_names_its_field(field, value, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    registry.build("spvos-tiny", **{field: value})


def test_json_values_that_fit_are_taken():
  family = registry.build("spvos-tiny", tile_pixels=[16, 16], target=1, compute_threshold=None, top_k=None)
  assert family.config.tile_pixels == (16, 16) and family.config.target == 1


def test_configs_round_trip_through_their_json_form():
  family = registry.build("stcn-tiny", memory={"slots": 6}, top_k=None)
  rebuilt = registry.from_config("stcn-tiny", registry.config_dict(family))
  assert rebuilt.config == family.config and rebuilt.config.memory.slots == 6
  assert isinstance(rebuilt.config.decoder_dims, tuple)
