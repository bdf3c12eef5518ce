"""STCN and STM specifics at their full sizes (the contract every family shares: tests/test_family_contract.py)."""

import functools

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


def test_configs_round_trip_through_their_json_form():
  family = registry.build("stcn-tiny", memory={"slots": 6}, top_k=None)
  rebuilt = registry.from_config("stcn-tiny", registry.config_dict(family))
  assert rebuilt.config == family.config and rebuilt.config.memory.slots == 6
  assert isinstance(rebuilt.config.decoder_dims, tuple)
